"""LangChain tools for generation and in-context editing, on any Backend.

>>> from codi2_sdk.agents import codi2_toolkit
>>> tools = codi2_toolkit(backend)                       # doctest: +SKIP
>>> [t.name for t in tools]                              # doctest: +SKIP
['generate_image', 'generate_audio', 'generate_video', 'edit_image_in_context', 'edit_audio_in_context',
 'edit_video_in_context', 'describe_media']

Every tool answers with ``(content, artifact)`` (``response_format="content_and_artifact"``): the
content is a short text naming the new medium's id (plus a v1 image block when ``show_image`` is
asked), the artifact is the model's assistant :class:`~codi2_sdk.messages.Message`. Media go in and out
by reference through a :class:`~codi2_sdk.agents.store.MediaStore`; a bad reference, or a model answer
without the medium asked for, raises ``ToolException`` with a clear message.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.base import Backend
from ..config import GenerationConfig
from ..content import Image, MediaModality, MediaPart, Part, Video
from ..errors import Codi2Error, InvalidRequestError, invalid_request
from ..events import GenerationRequest
from ..formats.langchain_blocks import to_langchain_blocks
from ..messages import Example, Message, user
from .store import MEDIUM_NOUNS, MediaStore

__all__ = ["DEFAULT_QUESTIONS", "Codi2Tool", "codi2_toolkit"]


class _MediaOut(BaseModel):
    seed: int | None = Field(None, description="Seed for a reproducible result; omit for a random one.")
    show_image: bool = Field(False, description="Also return a generated image itself as a content block.")


class GenerateArgs(_MediaOut):
    prompt: str = Field(description="What to make, in words, e.g. 'draw a large red circle on the left.'")
    inputs: list[str] = Field(
        default_factory=list,
        description="Optional media to condition on, by id (like 'image_1') or file path, e.g. an image to sonify.",
    )


class ExamplePair(BaseModel):
    before: str = Field(description="Id or file path of an example input.")
    after: str = Field(description="Id or file path of the same example after the edit.")


class EditArgs(_MediaOut):
    examples: list[ExamplePair] = Field(
        min_length=1, max_length=8, description="1 to 8 before/after pairs that show the edit to apply."
    )
    target: str = Field(description="Id or file path of the medium to edit the same way.")


class DescribeArgs(BaseModel):
    media: str = Field(description="Id or file path of the image, audio clip or video to describe.")
    question: str | None = Field(None, description="What to ask about it; by default a plain description.")


class Codi2Tool(BaseTool):
    """Base of the CoDi-2 tools: a backend, a media store, and turning answers into tool results."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any = Field(exclude=True)
    store: MediaStore = Field(exclude=True)
    config: GenerationConfig = Field(default_factory=GenerationConfig, exclude=True)
    """Settings for every call (steps, guidance, ...); a call's seed and the output medium go on top."""
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    produces: MediaModality | None = None

    def _request(self, **kwargs: Any) -> GenerationRequest:
        raise NotImplementedError

    def _config(self, seed: int | None) -> GenerationConfig:
        return self.config.merged({"seed": seed, "output_modality": self.produces or "text"})

    def _build(self, **kwargs: Any) -> GenerationRequest:
        try:
            return self._request(**kwargs)
        except ValidationError as exc:
            raise ToolException(str(invalid_request(exc, "arguments"))) from None
        except Codi2Error as exc:
            raise ToolException(str(exc)) from exc

    def _respond(self, message: Message, show_image: bool = False) -> tuple[Any, Message]:
        if self.produces is None:
            return message.text.strip() or "(no text)", message
        media = [p for p in message.parts if p.type == self.produces]
        if not media:
            raise ToolException(f"the model answered without {MEDIUM_NOUNS[self.produces]}: {message.text!r}")
        lines = []
        for part in media:
            ref = self.store.put(part)  # type: ignore[arg-type]
            lines.append(f"{ref}: {_describe(part)}")  # type: ignore[arg-type]
        text = "Made " + "; ".join(lines) + "."
        if show_image and self.produces == "image":
            return [{"type": "text", "text": text}, *to_langchain_blocks(media)], message  # type: ignore[arg-type]
        return text, message

    def _run(self, *args: Any, run_manager: Any = None, **kwargs: Any) -> tuple[Any, Message]:
        show = bool(kwargs.get("show_image", False))
        request = self._build(**kwargs)
        try:
            answer = self.backend.generate(request)
        except Codi2Error as exc:
            raise ToolException(f"{type(exc).__name__}: {exc}") from exc
        return self._respond(answer, show)

    async def _arun(self, *args: Any, run_manager: Any = None, **kwargs: Any) -> tuple[Any, Message]:
        show = bool(kwargs.get("show_image", False))
        request = self._build(**kwargs)
        try:
            answer = await self.backend.agenerate(request)
        except Codi2Error as exc:
            raise ToolException(f"{type(exc).__name__}: {exc}") from exc
        return self._respond(answer, show)


def _describe(part: MediaPart) -> str:
    made = f" by {part.provenance.model} (seed {part.provenance.seed})" if part.provenance else ""
    if isinstance(part, Image):
        return f"a {part.width}x{part.height} image{made}"
    if isinstance(part, Video):
        return f"a {part.duration:.1f} s {part.width}x{part.height} video{made}"
    return f"a {part.duration:.1f} s audio clip{made}"


class GenerateImageTool(Codi2Tool):
    name: str = "generate_image"
    description: str = (
        "Make an image from a text prompt, optionally conditioned on other media given by id or path. "
        "Returns the new image's id (like 'image_1') for use in later calls."
    )
    args_schema: type[BaseModel] = GenerateArgs
    produces: MediaModality | None = "image"

    def _request(  # type: ignore[override]
        self, prompt: str, inputs: list[str] | None = None, seed: int | None = None, **_: Any
    ) -> GenerationRequest:
        parts: list[Part] = [self.store.get(ref) for ref in inputs or []]
        return GenerationRequest(messages=[user(*parts, prompt)], config=self._config(seed))


class GenerateAudioTool(GenerateImageTool):
    name: str = "generate_audio"
    description: str = (
        "Make an audio clip from a text prompt, optionally conditioned on other media (for example the "
        "sound of an image: inputs=['image_1'], prompt='what does it sound like?'). Returns the clip's id."
    )
    produces: MediaModality | None = "audio"


class GenerateVideoTool(GenerateImageTool):
    name: str = "generate_video"
    description: str = (
        "Make a short video from a text prompt, optionally conditioned on other media (for example an image "
        "set in motion: inputs=['image_1'], prompt='make it move to the right.'). Returns the video's id."
    )
    produces: MediaModality | None = "video"


class EditImageInContextTool(Codi2Tool):
    name: str = "edit_image_in_context"
    description: str = (
        "Edit an image the way the before/after example pairs show, without describing the edit in words "
        "(CoDi-2's in-context learning). Returns the edited image's id."
    )
    args_schema: type[BaseModel] = EditArgs
    produces: MediaModality | None = "image"

    def _get(self, ref: str) -> MediaPart:
        assert self.produces is not None
        return self.store.get_as(ref, self.produces)

    def _request(  # type: ignore[override]
        self, examples: list[ExamplePair | dict[str, str]], target: str, seed: int | None = None, **_: Any
    ) -> GenerationRequest:
        pairs = [ExamplePair.model_validate(e) if isinstance(e, dict) else e for e in examples]
        shown = [Example(inputs=[self._get(p.before)], outputs=[self._get(p.after)]) for p in pairs]
        return GenerationRequest(examples=shown, messages=[user(self._get(target))], config=self._config(seed))


class EditAudioInContextTool(EditImageInContextTool):
    name: str = "edit_audio_in_context"
    description: str = (
        "Edit an audio clip the way the before/after example pairs show (in-context learning). "
        "Returns the edited clip's id."
    )
    produces: MediaModality | None = "audio"


class EditVideoInContextTool(EditImageInContextTool):
    name: str = "edit_video_in_context"
    description: str = (
        "Edit a video the way the before/after example pairs show (in-context learning), e.g. a change of "
        "colour or of motion. Returns the edited video's id."
    )
    produces: MediaModality | None = "video"


#: The question ``describe_media`` asks when the agent gives none, per medium.
DEFAULT_QUESTIONS: dict[MediaModality, str] = {
    "image": "what is this?",
    "audio": "what do you hear?",
    "video": "what happens?",
}


class DescribeMediaTool(Codi2Tool):
    name: str = "describe_media"
    description: str = (
        "Describe an image, an audio clip or a video (by id or path) in words, or answer a question about it."
    )
    args_schema: type[BaseModel] = DescribeArgs

    def _request(self, media: str, question: str | None = None, **_: Any) -> GenerationRequest:  # type: ignore[override]
        part = self.store.get(media)
        question = question or DEFAULT_QUESTIONS[part.type]
        return GenerationRequest(messages=[user(part, question)], config=self._config(None))


def codi2_toolkit(
    backend: Backend,
    *,
    store: MediaStore | None = None,
    config: GenerationConfig | dict[str, Any] | None = None,
    handle_tool_error: bool = False,
) -> list[Codi2Tool]:
    """The seven CoDi-2 tools over ``backend``, sharing one media store: make, edit by example and describe
    images, audio and video.

    Args:
        store: where media live and get ids; a new in-memory store by default.
        config: generation settings for every call (a call's ``seed`` and the tool's medium go on top).
        handle_tool_error: return tool errors to the agent as text instead of raising ``ToolException``.
    """
    if not isinstance(backend, Backend):
        raise InvalidRequestError(f"backend must be a codi2_sdk Backend, not {type(backend).__name__}")
    store = store if store is not None else MediaStore()
    kinds = (
        GenerateImageTool,
        GenerateAudioTool,
        GenerateVideoTool,
        EditImageInContextTool,
        EditAudioInContextTool,
        EditVideoInContextTool,
        DescribeMediaTool,
    )
    settings = GenerationConfig().merged(config)
    return [kind(backend=backend, store=store, config=settings, handle_tool_error=handle_tool_error) for kind in kinds]
