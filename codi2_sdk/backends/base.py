"""The one interface every way of running CoDi-2 implements.

The types it speaks live in :mod:`codi2_sdk.events` (re-exported here).

A :class:`Backend` turns a :class:`GenerationRequest` (in-context examples, the conversation so far
and the new user turn, and a :class:`~codi2_sdk.config.GenerationConfig`) into the assistant's
:class:`~codi2_sdk.messages.Message`. It can also stream the answer as :data:`Event` objects: text as
it is produced, progress through each diffusion decode, each medium when it is done, then the whole
message. Each method has an async twin.

In-process streams raise on failure; :class:`ErrorEvent` exists for the wire protocol, where the
server sends it as the last event and the remote client raises the matching exception.

Subclasses must implement :attr:`capabilities` and :meth:`generate`. The defaults derive the rest:
:meth:`stream` replays :meth:`generate`'s answer, :meth:`astream` runs :meth:`stream` in a worker thread and
:meth:`agenerate` takes the answer from :meth:`astream`, so a backend that streams for real (and stops when its
stream is closed) is cancelled by cancelling either async call.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from ..errors import InvalidRequestError, ModelError, error_from_code
from ..events import (
    Capabilities,
    Done,
    ErrorEvent,
    Event,
    GenerationRequest,
    MediaDone,
    Modality,
    Progress,
    TextDelta,
    events_from_message,
)
from ..messages import Message

__all__ = [
    "Backend",
    "Capabilities",
    "Done",
    "ErrorEvent",
    "Event",
    "GenerationRequest",
    "MediaDone",
    "Modality",
    "Progress",
    "TextDelta",
]

_END = object()


class Backend(ABC):
    """Runs a CoDi-2 model: answers a :class:`GenerationRequest` with an assistant message."""

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What the model reads and writes, its limits and its default settings."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> Message:
        """Answer ``request`` with one assistant message."""

    def stream(self, request: GenerationRequest) -> Iterator[Event]:
        """Answer ``request`` as a stream of events ending with :class:`Done`.

        Closing the iterator early cancels the generation.
        """
        yield from events_from_message(self.generate(request))

    async def agenerate(self, request: GenerationRequest) -> Message:
        """Async twin of :meth:`generate`: the :class:`Done` answer of :meth:`astream`, so cancelling it
        (``asyncio.wait_for``, a task's ``cancel()``) closes the stream and stops the generation."""
        events = self.astream(request)
        try:
            async for event in events:
                if isinstance(event, ErrorEvent):
                    raise error_from_code(event.code, event.message)
                if isinstance(event, Done):
                    return event.message
        finally:
            aclose = getattr(events, "aclose", None)  # an async generator: stop what it runs
            if aclose is not None:
                await aclose()
        raise ModelError(f"{self.capabilities.model}: the stream ended without an answer")

    async def astream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Async twin of :meth:`stream`; closing it (or cancelling its task) cancels the generation."""
        async with contextlib.aclosing(iterate_in_thread(lambda: self.stream(request))) as events:
            async for event in events:
                yield event

    def check_request(self, request: GenerationRequest) -> None:
        """Raise :class:`InvalidRequestError` if ``request`` asks for what this backend cannot do."""
        caps = self.capabilities
        wanted = request.config.output_modality
        if wanted != "auto" and wanted not in caps.output_modalities:
            raise InvalidRequestError(
                f"{caps.model} cannot write {wanted}; it writes {', '.join(caps.output_modalities)}"
            )
        if caps.max_examples is not None and len(request.examples) > caps.max_examples:
            raise InvalidRequestError(
                f"{len(request.examples)} in-context examples given; {caps.model} takes at most {caps.max_examples}"
            )
        parts = [p for m in request.messages for p in m.parts]
        parts += [p for e in request.examples for p in (*e.inputs, *e.outputs)]
        for part in parts:
            if part.type not in caps.input_modalities:
                raise InvalidRequestError(f"{caps.model} cannot read {part.type}")


async def iterate_in_thread(make_iterator: Any) -> AsyncGenerator[Any, None]:
    """Drive a blocking iterator in a worker thread and yield its items on the event loop.

    When the consumer stops early (``aclose()``, ``break``, cancellation), the iterator is closed in its
    thread before this generator finishes, so the work behind it stops and nothing is left running.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone; nobody is listening any more
            stop.set()

    def pump() -> None:
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                put(item)
                if stop.is_set():
                    break
        except BaseException as exc:
            put(None, exc)
            return
        finally:
            close = getattr(iterator, "close", None)  # a generator: runs its cleanup here
            if close is not None:
                close()
        put(_END)

    worker = loop.run_in_executor(None, pump)
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        with contextlib.suppress(Exception):  # the worker's errors went through the queue already
            await asyncio.shield(worker)
