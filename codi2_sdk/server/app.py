"""The FastAPI app that serves any Backend over the protocol in :mod:`codi2_sdk._protocol`.

Robustness rules (docs/server.md, "Limits and hardening", lists every limit and its setting):

- every refusal is a JSON error body with a stable code and the right status, never a crash: 400 bad
  media or request, 401 key, 404/405 routing, 413 body or media too large (the body is counted while it is
  read, so a lying or absent Content-Length does not help), 415 not JSON, 422 schema, 429 queue full (with
  Retry-After), 503 while the model loads; 500 only for a model failure or a bug;
- a bounded queue sits in front of the model: at most ``max_queue`` requests are admitted at once and
  ``max_concurrency`` of them run; a body is parsed and its media checked only after admission, in a
  worker thread that never holds the interpreter's lock for long (:mod:`._parsing`), ``parse_workers`` at a
  time, within per-request limits on media parts, pixels and seconds of audio;
- a client that disconnects cancels its generation (its stream is closed, which stops the model at the
  next token or diffusion step), and is logged as one info line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .._protocol import ErrorBody, ErrorDetail
from ..backends.base import Backend
from ..errors import ERROR_CODES, error_from_code
from . import openai_api, responses_api, routes, videos_api
from ._common import REQUEST_ID_HEADER, REQUEST_ID_SCOPE_KEY, ErrorAnswer, RequestIdMiddleware, log_refusal
from ._state import ModelState
from .settings import ServerSettings

__all__ = ["ErrorAnswer", "create_app"]

log = logging.getLogger("codi2_sdk.server")

# the code for a status that routing or the framework answers with on its own
_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_schema",
}


def _error_response(
    code: str, message: str, headers: dict[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump()
    return JSONResponse(body, status_code=status or ERROR_CODES[code].status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ErrorAnswer)
    async def error_answer(request: Request, exc: ErrorAnswer) -> JSONResponse:
        if not exc.logged:
            log_refusal(request, exc.code, exc.message)
        return _error_response(exc.code, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # routing's and the framework's own refusals (404, 405, ...), in the same error shape
        code = _HTTP_CODES.get(exc.status_code, "internal_error" if exc.status_code >= 500 else "invalid_request")
        if exc.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        log_refusal(request, code, message, exc.status_code)
        return _error_response(code, message, dict(exc.headers or {}), status=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        log.info("client disconnected during upload to %s", request.url.path)
        return Response(status_code=400)  # nobody is there to read it

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Answered outside the middleware stack (by Starlette's outermost layer): the id comes from the scope.
        request_id = request.scope.get(REQUEST_ID_SCOPE_KEY, "-")
        log.exception("request %s: unexpected error on %s %s", request_id, request.method, request.url.path)
        return _error_response("internal_error", "internal server error", {REQUEST_ID_HEADER: request_id})


def create_app(backend: Backend | Callable[[], Backend], settings: ServerSettings | None = None) -> FastAPI:
    """The server app for ``backend`` (or a function that loads it, called in the background at start-up)."""
    settings = settings or ServerSettings()
    state = ModelState(backend, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield

    app = FastAPI(title="codi2-sdk server", version="1", lifespan=lifespan)
    app.state.model = state
    app.state.responses = responses_api.ResponseStore(
        settings.stored_responses, int(settings.stored_responses_mb * 2**20), settings.stored_responses_seconds
    )
    app.state.videos = videos_api.VideoJobs(settings.stored_videos, settings.stored_videos_seconds)
    app.add_middleware(RequestIdMiddleware)
    _add_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(openai_api.router)
    app.include_router(responses_api.router)
    app.include_router(videos_api.router)
    if settings.ui or (settings.ui is None and importlib.util.find_spec("gradio") is not None):
        _mount_ui(app, state)
    return app


def _mount_ui(app: FastAPI, state: ModelState) -> None:
    """The chat page at /ui, on the same model, its turns taking places in the same queue as API calls."""
    from ..ui import mount_ui

    def backend() -> Backend:
        try:
            return state.ready()
        except ErrorAnswer as exc:
            raise error_from_code(exc.code, exc.message) from None

    @contextlib.asynccontextmanager
    async def gate() -> AsyncIterator[None]:
        try:
            release = state.admit()
        except ErrorAnswer as exc:
            raise error_from_code(exc.code, exc.message) from None
        try:
            async with state.running:
                yield
        finally:
            release()

    key = state.settings.api_key.get_secret_value() if state.settings.api_key is not None else None
    mount_ui(app, backend, path="/ui", api_key=key, gate=gate)
