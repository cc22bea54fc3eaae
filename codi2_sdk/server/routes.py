"""The SDK's own protocol (:mod:`codi2_sdk._protocol`): ``/v1/health``, ``/v1/capabilities``, ``/v1/generate``."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._protocol import API_PREFIX, sse_frame
from ..backends.base import Backend
from ..errors import Codi2Error, error_code_of
from ..events import ErrorEvent, GenerationRequest
from ._common import ErrorAnswer, current_request_id, final_message, read_body, until_disconnect
from ._state import ModelState, authorize, model_state

__all__ = ["router"]

log = logging.getLogger("codi2_sdk.server")

router = APIRouter(prefix=API_PREFIX)


@router.get("/health")
async def health(state: ModelState = Depends(model_state)) -> Response:
    """Whether the model is loaded (200), loading (503) or failed to load (500); open without a key."""
    if state.load_error is not None:
        return JSONResponse({"status": "error", "error": str(state.load_error)}, status_code=500)
    if state.backend is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ok", "model": state.backend.capabilities.model, "queued": state.admitted})


@router.get("/capabilities", dependencies=[Depends(authorize)])
async def capabilities(state: ModelState = Depends(model_state)) -> Response:
    """What the served model reads and writes."""
    return JSONResponse(state.ready().capabilities.model_dump(mode="json"))


@router.post("/generate", dependencies=[Depends(authorize)])
async def generate(request: Request, state: ModelState = Depends(model_state)) -> Response:
    """One answer, whole or as server-sent events; the body is parsed only once the request is admitted."""
    backend = state.ready()
    raw = await read_body(request, state.settings.max_body_bytes)
    release = state.admit()
    try:
        body = await state.parse(raw)
        generation = GenerationRequest(examples=body.examples, messages=body.messages, config=body.config)
        try:
            backend.check_request(generation)
        except Codi2Error as exc:
            raise ErrorAnswer.of(exc) from None
        if body.stream:
            response = _stream(state, backend, generation, release)
            release = _handed_over
            return response
        async with state.running:
            message = await until_disconnect(request, final_message(backend, generation))
        return JSONResponse(message.model_dump(mode="json"))
    finally:
        release()


def _handed_over() -> None:
    """The release of a request whose stream now owns its place in the queue."""


def _stream(
    state: ModelState, backend: Backend, generation: GenerationRequest, release: Callable[[], None]
) -> StreamingResponse:
    """The answer as server-sent events; the stream gives the request's queue place back when it ends."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            async with state.running:
                events = backend.astream(generation)
                try:
                    async for event in events:
                        yield sse_frame(event)
                except Codi2Error as exc:
                    log.info("request %s failed mid-stream: %s %s", current_request_id(), error_code_of(exc), exc)
                    yield sse_frame(ErrorEvent(code=error_code_of(exc), message=str(exc)))
                except Exception:
                    log.exception("request %s: generation failed mid-stream", current_request_id())
                    yield sse_frame(ErrorEvent(code="internal_error", message="internal server error"))
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
        finally:
            release()

    body = frames()
    weakref.finalize(body, release)  # a stream dropped before it started still gives its place back
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
