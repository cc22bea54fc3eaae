"""The HTTP protocol shared by the server and RemoteBackend (JSON over HTTP, versioned under /v1).

- ``POST /v1/generate``: body = :class:`GenerateBody` (a :class:`GenerationRequest` plus ``stream``);
  answer = the assistant :class:`~codi2_sdk.messages.Message` as JSON, or with ``"stream": true`` a
  ``text/event-stream`` of events (``event: <type>`` / ``data: <event JSON>``) ending with ``done`` or
  ``error``.
- ``GET /v1/capabilities``: :class:`~codi2_sdk.backends.base.Capabilities`.
- ``GET /v1/health`` (no key needed): 200 ``{"status": "ok", "model": ..., "queued": n}``; 503
  ``{"status": "loading"}`` while the model loads; 500 ``{"status": "error", "error": "<why>"}`` when loading
  failed.

Every error answer is ``{"error": {"code": ..., "message": ...}}`` with a stable ``code``; the codes, their
HTTP statuses and the exceptions a client raises for them are one table,
:data:`codi2_sdk.errors.ERROR_CODES`. A stream that fails after it started ends with an ``error`` event that
carries the same code.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from ._base import SDKModel
from .events import Event, GenerationRequest

API_PREFIX = "/v1"
REQUEST_ID_HEADER = "x-request-id"
"""The header that names a request on both sides: the server sets it on every answer, errors included, and the
client's errors carry it as ``request_id``."""


class GenerateBody(GenerationRequest):
    """The body of ``POST /v1/generate``."""

    stream: bool = False


class ErrorDetail(SDKModel):
    """The code (a key of :data:`~codi2_sdk.errors.ERROR_CODES`) and a human-readable message."""

    code: str
    message: str


class ErrorBody(SDKModel):
    """Every error response's body."""

    error: ErrorDetail


EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def sse_frame(event: Event) -> bytes:
    """One server-sent event carrying ``event``."""
    return f"event: {event.type}\ndata: {EVENT_ADAPTER.dump_json(event).decode()}\n\n".encode()
