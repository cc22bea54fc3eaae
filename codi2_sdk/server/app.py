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

import asyncio
import contextlib
import importlib.util
import logging
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .._protocol import API_PREFIX, ErrorBody, ErrorDetail, GenerateBody, sse_frame
from ..backends.base import Backend
from ..errors import ERROR_CODES, Codi2Error, error_code_of, error_from_code
from ..types import ErrorEvent, GenerationRequest
from ._common import ErrorAnswer, final_message, read_body, until_disconnect
from ._parsing import BodyLimits, Refusal, parse_body
from .openai_api import add_openai_routes
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


class _Model:
    """The backend (possibly still loading), the admission queue in front of it, and the body parsers."""

    def __init__(self, backend: Backend | Callable[[], Backend], settings: ServerSettings) -> None:
        self.settings = settings
        self.backend: Backend | None = backend if isinstance(backend, Backend) else None
        self._loader = None if isinstance(backend, Backend) else backend
        self.load_error: BaseException | None = None
        self.admitted = 0
        self.running = asyncio.Semaphore(settings.concurrency())
        self.parsing = asyncio.Semaphore(settings.parse_workers)
        self.limits = BodyLimits(
            settings.max_media_parts,
            settings.max_request_pixels,
            settings.max_request_audio_seconds,
            max_parts=settings.max_parts,
        )

    def start_loading(self) -> None:
        if self._loader is None:
            return
        loader = self._loader

        def load() -> None:
            try:
                self.backend = loader()
            except BaseException as exc:  # reported by /v1/health and every call
                log.exception("loading the model failed")
                self.load_error = exc

        threading.Thread(target=load, name="codi2-model-loader", daemon=True).start()

    def ready(self) -> Backend:
        if self.load_error is not None:
            raise ErrorAnswer("model_error", f"the model failed to load: {self.load_error}")
        if self.backend is None:
            raise ErrorAnswer("loading", "the model is still loading", {"Retry-After": str(self.settings.retry_after)})
        return self.backend

    def admit(self) -> Callable[[], None]:
        """Take a place in the queue, or refuse with 429; returns the (idempotent) release."""
        if self.admitted >= self.settings.max_queue:
            raise ErrorAnswer(
                "queue_full",
                f"{self.admitted} requests are already queued; retry later",
                {"Retry-After": str(self.settings.retry_after)},
            )
        self.admitted += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admitted -= 1

        return release

    async def parse(self, raw: bytes | bytearray) -> GenerateBody:
        """Parse and check a body in a worker thread, at most ``parse_workers`` at a time."""
        async with self.parsing:
            try:
                return await asyncio.to_thread(parse_body, raw, self.limits)
            except Refusal as refusal:
                raise ErrorAnswer(refusal.code, refusal.message) from None


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ErrorAnswer)
    async def error_answer(request: Request, exc: ErrorAnswer) -> JSONResponse:
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
        return _error_response(code, message, dict(exc.headers or {}), status=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        log.info("client disconnected during upload to %s", request.url.path)
        return Response(status_code=400)  # nobody is there to read it

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error_response("internal_error", "internal server error")


def create_app(backend: Backend | Callable[[], Backend], settings: ServerSettings | None = None) -> FastAPI:
    """The server app for ``backend`` (or a function that loads it, called in the background at start-up)."""
    settings = settings or ServerSettings()
    state = _Model(backend, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        yield

    app = FastAPI(title="codi2-sdk server", version="1", lifespan=lifespan)
    app.state.model = state
    _add_error_handlers(app)
    expected_key = settings.api_key.get_secret_value().encode() if settings.api_key is not None else None

    def authorize(request: Request) -> None:
        if expected_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected_key):
            raise ErrorAnswer("unauthorized", "missing or wrong API key (send 'Authorization: Bearer <key>')")

    @app.get(f"{API_PREFIX}/health")
    async def health() -> Response:
        if state.load_error is not None:
            return JSONResponse({"status": "error", "error": str(state.load_error)}, status_code=500)
        if state.backend is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model": state.backend.capabilities.model, "queued": state.admitted})

    @app.get(f"{API_PREFIX}/capabilities")
    async def capabilities(request: Request) -> Response:
        authorize(request)
        return JSONResponse(state.ready().capabilities.model_dump(mode="json"))

    @app.post(f"{API_PREFIX}/generate")
    async def generate(request: Request) -> Response:
        authorize(request)
        backend = state.ready()
        raw = await read_body(request, settings.max_body_bytes)
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

    add_openai_routes(app, state, authorize)
    if settings.ui or (settings.ui is None and importlib.util.find_spec("gradio") is not None):
        _mount_ui(app, state)
    return app


def _mount_ui(app: FastAPI, state: _Model) -> None:
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


def _handed_over() -> None:
    """The release of a request whose stream now owns its place in the queue."""


def _stream(state: _Model, backend: Backend, generation: GenerationRequest, release: Callable[[], None]):
    """The answer as server-sent events; the stream gives the request's queue place back when it ends."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            async with state.running:
                events = backend.astream(generation)
                try:
                    async for event in events:
                        yield sse_frame(event)
                except Codi2Error as exc:
                    yield sse_frame(ErrorEvent(code=error_code_of(exc), message=str(exc)))
                except Exception:
                    log.exception("generation failed mid-stream")
                    yield sse_frame(ErrorEvent(code="internal_error", message="internal server error"))
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
        finally:
            release()

    body = frames()
    weakref.finalize(body, release)  # a stream dropped before it started still gives its place back
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
