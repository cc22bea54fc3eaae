"""The HTTP protocol shared by the server and RemoteBackend (JSON over HTTP, versioned under /v1).

- ``POST /v1/generate``: body = :class:`GenerateBody` (a :class:`GenerationRequest` plus ``stream``);
  answer = the assistant :class:`~codi2_sdk.messages.Message` as JSON, or with ``"stream": true`` a
  ``text/event-stream`` of events (``event: <type>`` / ``data: <event JSON>``) ending with ``done`` or
  ``error``.
- ``GET /v1/capabilities``: :class:`~codi2_sdk.backends.base.Capabilities`.
- ``GET /v1/health``: ``{"status": "ok" | "loading", "model": ...}`` (503 while loading).

Errors are ``{"error": {"code": ..., "message": ...}}`` with a stable ``code``.
"""

from __future__ import annotations

from pydantic import BaseModel, TypeAdapter

from .backends.base import Event, GenerationRequest

API_PREFIX = "/v1"

#: error code -> HTTP status
ERROR_STATUS = {
    "invalid_media": 400,
    "invalid_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "body_too_large": 413,
    "media_too_large": 413,
    "invalid_schema": 422,
    "queue_full": 429,
    "model_error": 500,
    "internal_error": 500,
    "loading": 503,
}


class GenerateBody(GenerationRequest):
    """The body of ``POST /v1/generate``."""

    stream: bool = False


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def sse_frame(event: Event) -> bytes:
    """One server-sent event carrying ``event``."""
    return f"event: {event.type}\ndata: {EVENT_ADAPTER.dump_json(event).decode()}\n\n".encode()
