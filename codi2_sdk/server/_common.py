"""What the server's routes share: the error answer, reading a body within its limit, and running a generation
until it ends or the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import Request

from ..backends.base import Backend
from ..errors import Codi2Error, error_code_of
from ..messages import Message
from ..types import Done, GenerationRequest

__all__ = ["ErrorAnswer", "final_message", "read_body", "until_disconnect"]

log = logging.getLogger("codi2_sdk.server")


class ErrorAnswer(Exception):
    """Raised inside a route to answer with an error: a code from :data:`~codi2_sdk.errors.ERROR_CODES`."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}

    @classmethod
    def of(cls, exc: Codi2Error) -> ErrorAnswer:
        """The answer for an SDK error, by the error table."""
        return cls(error_code_of(exc), str(exc))


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
    events = backend.astream(generation)
    try:
        async for event in events:
            if isinstance(event, Done):
                return event.message
    except Codi2Error as exc:
        raise ErrorAnswer.of(exc) from None
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    raise ErrorAnswer("model_error", "the model ended without an answer")


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
                log.info("client disconnected from %s; its generation was cancelled", request.url.path)
                raise ErrorAnswer("model_error", "the client disconnected")
    finally:
        if not task.done():
            task.cancel()
