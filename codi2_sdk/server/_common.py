"""What the server's routes share: the error answer, the request id, reading a body within its limit, and running a
generation until it ends or the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import secrets
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from .._protocol import REQUEST_ID_HEADER
from ..backends.base import Backend
from ..errors import ERROR_CODES, Codi2Error, error_code_of
from ..events import GenerationRequest
from ..messages import Message

__all__ = [
    "REQUEST_ID_HEADER",
    "REQUEST_ID_SCOPE_KEY",
    "ErrorAnswer",
    "RequestIdMiddleware",
    "current_request_id",
    "final_message",
    "log_refusal",
    "read_body",
    "until_disconnect",
]

log = logging.getLogger("codi2_sdk.server")

REQUEST_ID_SCOPE_KEY = "codi2.request_id"
"""Where the id also sits in the ASGI scope, for the one answer made outside the middleware (an unexpected 500)."""
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("codi2_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being served (``"-"`` outside one), for log lines."""
    return _request_id.get()


class RequestIdMiddleware:
    """Name every HTTP request: the caller's ``X-Request-Id`` when it is a plain token, else a new ``req_...``
    id; it is set on the answer (errors and streams too) and readable in the request's log lines through
    :func:`current_request_id`. A pure ASGI middleware, so streams and disconnects pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _CLIENT_ID.fullmatch(given) else f"req_{secrets.token_hex(12)}"
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        token = _request_id.set(request_id)

        async def send_with_id(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


class ErrorAnswer(Exception):
    """Raised inside a route to answer with an error: a code from :data:`~codi2_sdk.errors.ERROR_CODES`."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None, *, logged: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}
        self.logged = logged  # said in the log already (a client that left: nobody reads the answer)

    @classmethod
    def of(cls, exc: Codi2Error) -> ErrorAnswer:
        """The answer for an SDK error, by the error table."""
        return cls(error_code_of(exc), str(exc))


def log_refusal(request: Request, code: str, message: str, status: int | None = None) -> None:
    """One log line per error answer, with the request id the client's error carries (5xx at ERROR)."""
    if status is None:
        row = ERROR_CODES.get(code)
        status = row.status if row is not None else 500
    level = logging.ERROR if status >= 500 else logging.INFO
    log.log(level, "request %s: %s %s -> %d %s: %s", current_request_id(), request.method, request.url.path,
            status, code, message)  # fmt: skip


async def read_body(request: Request, limit: int) -> bytearray:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise ErrorAnswer("unsupported_media_type", f"send the body as application/json, not {content_type}")
    declared = request.headers.get("content-length")
    expected = int(declared) if declared is not None and declared.isdigit() else 0
    if expected > limit:
        raise ErrorAnswer("body_too_large", f"the body is {expected:,} bytes; the limit is {limit:,}")
    # Filled in place: joining 60 MiB of chunks at the end would stall the event loop for ~50 ms.
    body, size = bytearray(expected), 0
    async for chunk in request.stream():
        if size + len(chunk) > limit:
            raise ErrorAnswer("body_too_large", f"the body is over the limit of {limit:,} bytes")
        body[size : size + len(chunk)] = chunk
        size += len(chunk)
    del body[size:]  # a Content-Length that claimed more than came
    return body


async def final_message(backend: Backend, generation: GenerationRequest) -> Message:
    """The backend's answer to ``generation``; its errors as the HTTP answers they map to."""
    try:
        return await backend.agenerate(generation)
    except Codi2Error as exc:
        raise ErrorAnswer.of(exc) from None


async def until_disconnect(request: Request, work: Any) -> Any:
    """Run ``work``; cancel it (and so the generation) if the client goes away first."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                log.info(
                    "request %s: client disconnected from %s; its generation was cancelled",
                    current_request_id(),
                    request.url.path,
                )
                raise ErrorAnswer("model_error", "the client disconnected", logged=True)
    finally:
        if not task.done():
            task.cancel()
