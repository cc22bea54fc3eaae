"""The one interface every way of running CoDi-2 implements, and the types it speaks.

A :class:`Backend` turns a :class:`GenerationRequest` (in-context examples, the conversation so far
and the new user turn, and a :class:`~codi2_sdk.config.GenerationConfig`) into the assistant's
:class:`~codi2_sdk.messages.Message`. It can also stream the answer as :data:`Event` objects: text as
it is produced, progress through each diffusion decode, each medium when it is done, then the whole
message. Each method has an async twin.

In-process streams raise on failure; :class:`ErrorEvent` exists for the wire protocol, where the
server sends it as the last event and the remote client raises the matching exception.

Subclasses must implement :attr:`capabilities` and :meth:`generate`. The defaults derive the rest:
:meth:`stream` replays :meth:`generate`'s answer, :meth:`agenerate` and :meth:`astream` run the sync
methods in a worker thread. Real backends override them to stream and cancel for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import _media
from ..config import GenerationConfig
from ..content import Audio, Image, Text
from ..errors import InvalidRequestError
from ..messages import Example, Message

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

Modality = Literal["text", "image", "audio"]


class Capabilities(BaseModel):
    """What a backend's model reads and writes, and the limits it enforces."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str
    """The model's name."""
    input_modalities: list[Modality] = ["text", "image", "audio"]
    output_modalities: list[Modality] = ["text", "image", "audio"]
    max_examples: int | None = None
    """Most in-context examples in one request, if limited."""
    context_length: int | None = None
    """Most tokens (media included) the model attends to."""
    max_media_bytes: int = _media.MAX_MEDIA_BYTES
    max_image_pixels: int = _media.MAX_IMAGE_PIXELS
    max_audio_seconds: float = _media.MAX_AUDIO_SECONDS
    defaults: GenerationConfig = GenerationConfig()
    """The settings used where a request's config leaves a field at ``None``."""


class GenerationRequest(BaseModel):
    """Everything a backend needs for one answer: examples, the conversation, and the settings.

    ``messages`` may start with one system message and must end with a user message.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    examples: list[Example] = Field(default_factory=list)
    messages: list[Message] = Field(min_length=1)
    config: GenerationConfig = GenerationConfig()

    @model_validator(mode="after")
    def _check_roles(self) -> GenerationRequest:
        if self.messages[-1].role != "user":
            raise ValueError("the last message of a request must be a user message")
        if any(m.role == "system" for m in self.messages[1:]):
            raise ValueError("a system message may only come first")
        return self


class TextDelta(BaseModel):
    """A piece of answer text, as soon as it is produced."""

    type: Literal["text_delta"] = "text_delta"
    text: str


class Progress(BaseModel):
    """One diffusion step of a medium being decoded."""

    type: Literal["progress"] = "progress"
    modality: Literal["image", "audio"]
    part_index: int
    """Index of the part being made in the answer's ``parts``."""
    step: int
    """Steps done so far (1 to ``total``)."""
    total: int


class MediaDone(BaseModel):
    """A finished medium of the answer."""

    type: Literal["media_done"] = "media_done"
    part_index: int
    part: Annotated[Image | Audio, Field(discriminator="type")]


class Done(BaseModel):
    """The complete answer; always the last event of a successful stream."""

    type: Literal["done"] = "done"
    message: Message


class ErrorEvent(BaseModel):
    """A failure reported by a server mid-stream (in-process streams raise instead)."""

    type: Literal["error"] = "error"
    code: str
    message: str


Event = Annotated[TextDelta | Progress | MediaDone | Done | ErrorEvent, Field(discriminator="type")]
"""Any stream event; pydantic picks the class from ``type``."""


def events_from_message(message: Message) -> Iterator[TextDelta | MediaDone | Done]:
    """The events that a stream of an already finished ``message`` would carry."""
    for index, part in enumerate(message.parts):
        if isinstance(part, Text):
            yield TextDelta(text=part.text)
        else:
            yield MediaDone(part_index=index, part=part)
    yield Done(message=message)


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
        """Async twin of :meth:`generate`."""
        return await asyncio.to_thread(self.generate, request)

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
