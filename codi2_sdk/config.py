"""Generation settings: one :class:`GenerationConfig` with a sub-config per output modality.

Every field that is ``None`` means "the model's own default" (codi2-mini and the full-scale model
were tuned differently); :attr:`Capabilities.defaults <codi2_sdk.backends.base.Capabilities>` says what
that is. Out-of-range values are refused when the config is made, with an
:class:`~codi2_sdk.errors.InvalidRequestError` that names each field's path and the allowed range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._base import SDKModel
from .content import Modality
from .errors import InvalidRequestError

__all__ = ["AudioConfig", "GenerationConfig", "ImageConfig", "OutputModality", "TextConfig", "VideoConfig"]

OutputModality = Literal["auto"] | Modality


class _Config(SDKModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TextConfig(_Config):
    """How text is sampled."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=8192)
    """Most tokens in one answer (a medium counts as the three tokens of its tags and slot); ``None``
    for the model's default (256 unless the model says otherwise)."""
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    """0 picks the likeliest token every time (greedy); higher values sample more freely."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: sample only from the smallest set of tokens whose probability reaches this."""


class _MediaConfig(_Config):
    candidates: int | None = Field(default=None, ge=1, le=16)
    """Samples drawn for each medium (in one batch); the one whose features, read back by the model's own encoder,
    lie nearest the feature the LLM wrote is kept (best-of-n reranking, as DALL-E reranked its samples with
    CLIP). 1 keeps the only sample; more cost that many decodes."""
    scheduler: Literal["default", "dpm_solver"] | None = None
    """The sampler: the decoder's own (``"default"``: DDIM for the paper's decoders), or DPM-Solver++ (2nd-order
    multistep, ``"dpm_solver"``), which reaches a comparable sample in about half the steps (20-25 where DDIM takes
    50): ask for fewer ``steps`` with it to decode faster, at some loss of fine detail."""


class ImageConfig(_MediaConfig):
    """How images are decoded."""

    steps: int | None = Field(default=None, ge=1, le=1000)
    """Diffusion steps (the paper: 50 DDIM steps)."""
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    """Classifier-free guidance (the paper: 7.5); 1 turns guidance off."""
    noise_level: int | None = Field(default=None, ge=0, le=1000)
    """unCLIP noise added to the image embedding (0 to 1000)."""
    size: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    """Side of the square output in pixels; ``None`` for the decoder's native size."""


class AudioConfig(_MediaConfig):
    """How audio is decoded."""

    steps: int | None = Field(default=None, ge=1, le=1000)
    """Diffusion steps."""
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    """Classifier-free guidance; 1 turns guidance off."""
    duration: float | None = Field(default=None, gt=0.0, le=60.0)
    """Clip length in seconds; ``None`` for the decoder's native length."""


class VideoConfig(_MediaConfig):
    """How video clips are decoded."""

    steps: int | None = Field(default=None, ge=1, le=1000)
    """Diffusion steps."""
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    """Classifier-free guidance; 1 turns guidance off."""
    num_frames: int | None = Field(default=None, ge=1, le=600)
    """Frames in the clip; ``None`` for the decoder's native count."""
    fps: float | None = Field(default=None, gt=0.0, le=240.0)
    """Frames per second of the clip written; ``None`` for the decoder's own."""
    size: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    """Side of the square frames in pixels; ``None`` for the decoder's native size."""
    width: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    """Frame width in pixels, for decoders that make frames of any shape (Zeroscope: 576 natively); ``None`` for
    ``size`` or the decoder's own. codi2-mini's frames are square: it reads ``size`` only."""
    height: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    """Frame height in pixels (Zeroscope: 320 natively), as :attr:`width`."""


class GenerationConfig(_Config):
    """Everything that steers one answer.

    Example:
        >>> GenerationConfig(seed=7, output_modality="image", image={"steps": 25})
        GenerationConfig(seed=7, output_modality='image', ...)
    """

    seed: int | None = Field(default=None, ge=0, lt=2**63)
    """Seed for sampling and diffusion noise; the same seed and request give the same bytes."""
    output_modality: OutputModality = "auto"
    """``"auto"`` lets the model choose; another value makes the answer start with that medium."""
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    audio: AudioConfig = AudioConfig()
    video: VideoConfig = VideoConfig()

    if TYPE_CHECKING:  # what the constructor takes: each section as its config or as a mapping of its fields

        def __init__(
            self,
            *,
            seed: int | None = None,
            output_modality: OutputModality = "auto",
            text: TextConfig | Mapping[str, Any] = ...,
            image: ImageConfig | Mapping[str, Any] = ...,
            audio: AudioConfig | Mapping[str, Any] = ...,
            video: VideoConfig | Mapping[str, Any] = ...,
        ) -> None: ...

    def settings_for(self, modality: str) -> TextConfig | ImageConfig | AudioConfig | VideoConfig:
        """The sub-config of one modality (each is the field named after it)."""
        if modality not in self.sections():
            raise InvalidRequestError(f"there are no generation settings for {modality}")
        return getattr(self, modality)  # type: ignore[no-any-return]

    @classmethod
    def sections(cls) -> list[str]:
        """The modalities that have settings of their own (``text``, ``image``, ``audio``, ``video``)."""
        return [name for name, field in cls.model_fields.items() if isinstance(field.default, _Config)]

    def merged(self, overrides: GenerationConfig | Mapping[str, Any] | None) -> GenerationConfig:
        """This config with ``overrides`` applied: a config replaces it, a mapping is merged in field by field.

        Raises:
            InvalidRequestError: the merged settings are out of range (the message names each field's path).
        """
        if overrides is None:
            return self
        if isinstance(overrides, GenerationConfig):
            return overrides
        if not isinstance(overrides, Mapping):
            raise InvalidRequestError(f"config must be a GenerationConfig or a mapping, not {type(overrides).__name__}")
        data = self.model_dump()
        for key, value in overrides.items():
            if isinstance(value, BaseModel):
                value = value.model_dump(exclude_unset=True)
            if isinstance(value, Mapping) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return GenerationConfig.model_validate(data)
