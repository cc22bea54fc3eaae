"""The types every layer speaks: what a backend is asked (:class:`GenerationRequest`), what it can do
(:class:`Capabilities`) and what it streams back (:data:`Event`).

They sit below the model, the backends, the wire protocol and the server, so each of those imports them
downward. :data:`Modality` and :data:`MediaModality` are defined with the content parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from . import _media
from ._base import SDKModel
from .config import GenerationConfig
from .content import Audio, Image, MediaModality, Modality, Text, Video
from .messages import Example, Message

__all__ = [
    "Capabilities",
    "Done",
    "ErrorEvent",
    "Event",
    "GenerationRequest",
    "MediaDone",
    "MediaModality",
    "Modality",
    "Progress",
    "TextDelta",
    "events_from_message",
]


class Capabilities(SDKModel):
    """What a backend's model reads and writes, and the limits it enforces."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str
    """The model's name."""
    input_modalities: list[Modality] = Field(default_factory=lambda: list(get_args(Modality)))
    output_modalities: list[Modality] = Field(default_factory=lambda: list(get_args(Modality)))
    max_examples: int | None = None
    """Most in-context examples in one request, if limited."""
    context_length: int | None = None
    """Most tokens (media included) the model attends to."""
    max_media_bytes: int = _media.MAX_MEDIA_BYTES
    max_image_pixels: int = _media.MAX_IMAGE_PIXELS
    max_audio_seconds: float = _media.MAX_AUDIO_SECONDS
    defaults: GenerationConfig = GenerationConfig()
    """The settings used where a request's config leaves a field at ``None``."""
    vocabulary: list[str] | None = None
    """The words the model understands, where its vocabulary is closed (codi2-mini); ``None`` for an open one."""
    prompt_examples: list[str] = Field(default_factory=list)
    """Prompts of the kinds the model was trained on, as a guide to what it understands."""


class GenerationRequest(SDKModel):
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
        if not any(part.type != "text" or part.text.strip() for part in self.messages[-1].parts):
            raise ValueError("the last user message is empty: a turn needs text or a medium (image, audio or video)")
        if any(m.role == "system" for m in self.messages[1:]):
            raise ValueError("a system message may only come first")
        return self


class TextDelta(SDKModel):
    """A piece of answer text, as soon as it is produced."""

    type: Literal["text_delta"] = "text_delta"
    text: str


class Progress(SDKModel):
    """One diffusion step of a medium being decoded."""

    type: Literal["progress"] = "progress"
    modality: MediaModality
    part_index: int
    """Index of the part being made in the answer's ``parts``."""
    step: int
    """Steps done so far (1 to ``total``)."""
    total: int


class MediaDone(SDKModel):
    """A finished medium of the answer."""

    type: Literal["media_done"] = "media_done"
    part_index: int
    part: Annotated[Image | Audio | Video, Field(discriminator="type")]


class Done(SDKModel):
    """The complete answer; always the last event of a successful stream."""

    type: Literal["done"] = "done"
    message: Message


class ErrorEvent(SDKModel):
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
