"""The FastAPI app that serves any Backend over the protocol in :mod:`codi2_sdk._protocol`.

Robustness rules:

- every refusal is a JSON error body with a stable code and the right status, never a crash: 400 bad
  media or request, 401 key, 413 body or medium too large (the body is counted while it is read, so a
  lying or absent Content-Length does not help), 422 schema, 429 queue full (with Retry-After), 503
  while the model loads; 500 only for a bug;
- a bounded queue sits in front of the model: at most ``max_queue`` requests are admitted at once and
  ``max_concurrency`` of them run;
- a client that disconnects cancels its generation (its stream is closed, which stops the model at the
  next token or diffusion step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from .._protocol import API_PREFIX, ErrorBody, ErrorDetail, GenerateBody, sse_frame
from ..backends.base import Backend
from ..errors import ERROR_CODES, Codi2Error, error_code_of
from ..types import Done, ErrorEvent, GenerationRequest
from .settings import ServerSettings

__all__ = ["create_app"]

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


def _error_response(code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump()
    return JSONResponse(body, status_code=ERROR_CODES[code].status, headers=headers)


# the code for a status that routing or the framework answers with on its own
_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_schema",
}


class _Model:
    """The backend (possibly still loading) and the admission queue in front of it."""

    def __init__(self, backend: Backend | Callable[[], Backend], settings: ServerSettings) -> None:
        self.settings = settings
        self.backend: Backend | None = backend if isinstance(backend, Backend) else None
        self._loader = None if isinstance(backend, Backend) else backend
        self.load_error: BaseException | None = None
        self.admitted = 0
        self.running = asyncio.Semaphore(settings.max_concurrency)

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

    @contextlib.asynccontextmanager
    async def admission(self) -> AsyncIterator[None]:
        release = self.admit()
        try:
            yield
        finally:
            release()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ErrorAnswer("body_too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ErrorAnswer("body_too_large", f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> GenerateBody:
    try:
        return GenerateBody.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise ErrorAnswer("invalid_schema", f"the request does not match the protocol: {problems}") from None
    except Codi2Error as exc:
        raise ErrorAnswer.of(exc) from None


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
    expected_key = settings.api_key.get_secret_value().encode() if settings.api_key is not None else None

    def authorize(request: Request) -> None:
        if expected_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected_key):
            raise ErrorAnswer("unauthorized", "missing or wrong API key (send 'Authorization: Bearer <key>')")

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
        response = _error_response(code, message, dict(exc.headers or {}))
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error_response("internal_error", "internal server error")

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
        body = _parse(await _read_body(request, settings.max_body_bytes))
        generation = GenerationRequest(examples=body.examples, messages=body.messages, config=body.config)
        try:
            backend.check_request(generation)
        except Codi2Error as exc:
            raise ErrorAnswer.of(exc) from None
        if body.stream:
            return await _stream(request, backend, generation)
        async with state.admission(), state.running:
            message = await _until_disconnect(request, _final_message(backend, generation))
        return JSONResponse(message.model_dump(mode="json"))

    async def _stream(request: Request, backend: Backend, generation: GenerationRequest) -> StreamingResponse:
        release = state.admit()  # a full queue is refused before the stream starts (429, not 200)

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

    return app


async def _final_message(backend: Backend, generation: GenerationRequest) -> Any:
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


async def _until_disconnect(request: Request, work: Any) -> Any:
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
                raise ErrorAnswer("model_error", "the client disconnected")
    finally:
        if not task.done():
            task.cancel()
