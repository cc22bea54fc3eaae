"""The SDK's own protocol (:mod:`codi2_sdk._protocol`): ``/v1/health``, ``/v1/capabilities``, ``/v1/generate``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from .._protocol import API_PREFIX, sse_frame
from ..events import ErrorEvent, GenerationRequest
from ._common import final_message, read_body, until_disconnect
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
    state.ready()
    raw = await read_body(request, state.settings.max_body_bytes)
    release = state.admit()
    try:
        body = await state.parse(raw)
        generation = GenerationRequest(examples=body.examples, messages=body.messages, config=body.config)
        backend = state.checked(generation)
        if body.stream:
            response = state.event_stream(
                backend, generation, release, frames_of=lambda event: [sse_frame(event)], error_frame=_error_frame
            )
            release = _handed_over
            return response
        async with state.running:
            message = await until_disconnect(request, final_message(backend, generation))
        return JSONResponse(message.model_dump(mode="json"))
    finally:
        release()


def _handed_over() -> None:
    """The release of a request whose stream now owns its place in the queue."""


def _error_frame(code: str, message: str) -> bytes:
    return sse_frame(ErrorEvent(code=code, message=message))
