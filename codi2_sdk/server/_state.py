"""The server's hold on its model: the backend (possibly still loading), the admission queue in front of it,
and the body parsers. The app keeps one as ``app.state.model``; routes reach it through :func:`model_state`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable

from fastapi import Request
from fastapi.responses import StreamingResponse

from .._protocol import GenerateBody
from ..backends.base import Backend
from ..errors import Codi2Error, error_code_of
from ..events import Event, GenerationRequest
from ._common import ErrorAnswer, current_request_id
from ._parsing import BodyLimits, Refusal, parse_body
from .settings import ServerSettings

__all__ = ["ModelState", "authorize", "caller_key", "model_state"]

log = logging.getLogger("codi2_sdk.server")


class ModelState:
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

    def checked(self, generation: GenerationRequest) -> Backend:
        """The backend, once it has accepted ``generation`` (what it reads and writes, its limits)."""
        backend = self.ready()
        try:
            backend.check_request(generation)
        except Codi2Error as exc:
            raise ErrorAnswer.of(exc) from None
        return backend

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

    def event_stream(
        self,
        backend: Backend,
        generation: GenerationRequest,
        release: Callable[[], None],
        *,
        frames_of: Callable[[Event], Iterable[bytes]],
        error_frame: Callable[[str, str], bytes],
        opening: Iterable[bytes] = (),
        closing: Iterable[bytes] = (),
    ) -> StreamingResponse:
        """An admitted request's answer as server-sent events, in one of the server's protocols: ``opening``, then
        ``frames_of(event)`` for each event, then ``closing``; a failure ends it with ``error_frame(code, message)``.
        The stream owns the request's place in the queue (``release``) and gives it back when it ends, or when it
        is dropped before it started."""

        async def frames() -> AsyncIterator[bytes]:
            try:
                async with self.running:
                    for frame in opening:
                        yield frame
                    events = backend.astream(generation)
                    try:
                        async for event in events:
                            for frame in frames_of(event):
                                yield frame
                    except Codi2Error as exc:
                        log.info("request %s failed mid-stream: %s %s", current_request_id(), error_code_of(exc), exc)
                        yield error_frame(error_code_of(exc), str(exc))
                        return
                    except Exception:
                        log.exception("request %s: generation failed mid-stream", current_request_id())
                        yield error_frame("internal_error", "internal server error")
                        return
                    finally:
                        await events.aclose()  # type: ignore[attr-defined]
                    for frame in closing:
                        yield frame
            finally:
                release()

        body = frames()
        weakref.finalize(body, release)
        return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def model_state(request: Request) -> ModelState:
    """The model state of the app serving ``request`` (a FastAPI dependency)."""
    state: ModelState = request.app.state.model
    return state


def caller_key(request: Request) -> str:
    """Whose kept things (responses, video jobs) a request may reach: the hash of the bearer token it sent."""
    return hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()


def authorize(request: Request) -> None:
    """Refuse a request without the server's API key, when it has one (a FastAPI dependency)."""
    key = model_state(request).settings.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), key.get_secret_value().encode()
    ):
        raise ErrorAnswer("unauthorized", "missing or wrong API key (send 'Authorization: Bearer <key>')")
