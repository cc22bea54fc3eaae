"""The parts a CoDi-2 model is built from, and the registry of their kinds.

A checkpoint's ``codi2.json`` names each medium's encoder and decoder by kind (``"cnn_image"``,
``"unclip_image"``, ...). A new kind is one class with a ``kind`` name, ``build(**args)`` (a random-initialised
one) and ``from_pretrained(folder)``, registered with :func:`register_encoder` or :func:`register_decoder` (each
family registers its kinds in its package's ``__init__``: :mod:`codi2_sdk.model.mini`,
:mod:`codi2_sdk.model.fullscale`); its own options (unCLIP's ``noise_level``) are declared on the class.

- :class:`MediaEncoder`: what the model needs of an encoder. Every encoder returns
  ``(batch, tokens_per_item, width)``; token 0 is the pooled feature (CLS), the one that stands for the whole
  medium. User-side media enter the LLM with all their tokens; media the model writes (and example outputs) with
  the pooled one only, since that is what the output head predicts.
- :class:`DiffusionDecoder`: what the model needs of a decoder. :meth:`~DiffusionDecoder.iter_decode` runs the
  diffusion a step at a time (yielding each step, so callers stream progress and cancel by closing it) and builds
  each part once, at the requested size or duration, with its :class:`~codi2_sdk.content.Provenance`.
- :class:`FrameVideoEncoder`: video read by any image encoder frame by frame (both scales use it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast, overload, runtime_checkable

import numpy as np
import PIL.Image
import torch
from torch import nn

from ..config import AudioConfig, ImageConfig, VideoConfig
from ..content import MediaModality, Provenance
from ..errors import ModelError

__all__ = [
    "DECODER_KINDS",
    "MediaSettings",
    "DiffusionDecoder",
    "ENCODER_KINDS",
    "FrameVideoEncoder",
    "MediaEncoder",
    "PLUGIN_GROUPS",
    "StepCallback",
    "build_kind",
    "kind_class",
    "load_kind",
    "register_decoder",
    "register_encoder",
]


@runtime_checkable
class MediaEncoder(Protocol):
    """What the model needs of an encoder."""

    @property
    def kind(self) -> str:
        """The registry name of this encoder's class."""
        ...

    @property
    def modality(self) -> str: ...

    @property
    def width(self) -> int:
        """Feature width."""
        ...

    @property
    def tokens_per_item(self) -> int:
        """Feature tokens per medium (the pooled one first)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def preprocess(self, parts: list[Any]) -> torch.Tensor:
        """Decode a list of parts into one input tensor."""
        ...

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Features ``(batch, tokens_per_item, width)``, pooled feature first."""
        ...

    def save_pretrained(self, directory: str | Path) -> None: ...


class FrameVideoEncoder(nn.Module):
    """Video clips read by an image tower frame by frame: ``frames`` frames spread over the clip, each encoded
    like an image, the tokens averaged over time within each of ``segments`` consecutive spans.

    The paper runs ImageBind's vision tower on 2-frame clips and averages them (``segments=1``); ImageBind's
    tower is OpenCLIP ViT-H with a temporal patch stem, and this runs the same ViT-H (``CLIPImageEncoder``) on
    single frames, the stem's image case. With ``segments`` > 1 the spans' tokens are concatenated along the
    width (``width`` is the tower's times ``segments``), so the features keep which way a clip goes (codi2-mini
    reads its start and end: ``segments=2``).
    """

    kind = "frames_video"
    modality = "video"
    FILE = "frames_video.json"

    def __init__(self, image_encoder: MediaEncoder, frames: int = 8, segments: int = 1) -> None:
        super().__init__()
        if frames % segments:
            raise ValueError(f"frames ({frames}) must split evenly into {segments} segments")
        self.image_encoder = image_encoder
        self.frames = frames
        self.segments = segments

    @classmethod
    def build(cls, **args: Any) -> FrameVideoEncoder:
        frames, segments = int(args.pop("frames", 8)), int(args.pop("segments", 1))
        tower = kind_class("encoder", args.pop("image_kind", "clip_image"))
        return cls(tower.build(**args), frames=frames, segments=segments)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FrameVideoEncoder:

        settings = json.loads((Path(path) / cls.FILE).read_text())
        tower = kind_class("encoder", settings.get("image_kind", "clip_image"))
        return cls(
            tower.from_pretrained(path), frames=int(settings["frames"]), segments=int(settings.get("segments", 1))
        )

    def save_pretrained(self, directory: str | Path) -> None:

        self.image_encoder.save_pretrained(directory)
        settings = {"frames": self.frames, "segments": self.segments, "image_kind": self.image_encoder.kind}
        (Path(directory) / self.FILE).write_text(json.dumps(settings))

    @property
    def wrapped(self) -> nn.Module:
        """The image encoder this reads frames with (a checkpoint stores it once where it is shared)."""
        return cast(nn.Module, self.image_encoder)

    def wrapping_settings(self) -> dict[str, Any]:
        return {"frames": self.frames, "segments": self.segments}

    @classmethod
    def wrapping(cls, module: Any, **settings: Any) -> FrameVideoEncoder:
        """Frame-wise reading through an image encoder loaded elsewhere (the model's own image encoder)."""
        return cls(module, frames=int(settings["frames"]), segments=int(settings.get("segments", 1)))

    @property
    def width(self) -> int:
        return int(self.image_encoder.width) * self.segments

    @property
    def tokens_per_item(self) -> int:
        return int(self.image_encoder.tokens_per_item)

    def preprocess(self, parts: list[Any]) -> torch.Tensor:
        """Clips to ``(batch, frames, 3, size, size)``, each frame read as the image tower reads a picture (a
        shorter clip repeats frames to fill)."""
        clips = []
        for part in parts:
            frames = part.to_frames()
            picks = np.linspace(0, len(frames) - 1, self.frames).round().astype(int)
            clips.append(self.image_encoder.preprocess([PIL.Image.fromarray(frames[i]) for i in picks]))
        return torch.stack(clips)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, count = clips.shape[:2]
        tokens = self.image_encoder(clips.flatten(0, 1))  # (batch * frames, tokens, width)
        spans = tokens.view(batch, self.segments, count // self.segments, *tokens.shape[1:]).mean(dim=2)
        return spans.permute(0, 2, 1, 3).flatten(2)  # (batch, tokens, segments * width)


StepCallback = Callable[[int, int], None]
"""Called after each diffusion step with ``(step, total)``; raising from it cancels the decode."""


MediaSettings = ImageConfig | AudioConfig | VideoConfig
"""The settings of any medium a decoder makes."""


class DiffusionDecoder(nn.Module):
    """What the model needs of a decoder: a conditioning width, stepwise sampling, and parts out.

    Subclasses set ``kind`` (their registry name), ``modality``, and ``options``: the fields of the
    modality's settings that only this kind reads (passed to :meth:`iter_sample` as keywords).
    """

    kind: ClassVar[str] = ""
    modality: ClassVar[MediaModality]
    options: ClassVar[tuple[str, ...]] = ("scheduler",)
    cond_dim: int
    unet: Any
    """The denoiser: every decoder here has a diffusers UNet (``UNet2DConditionModel``, ``UNet3DConditionModel``)."""
    vae: Any
    """Its autoencoder (a diffusers ``AutoencoderKL``)."""

    def speed_up(self, *, compile: bool = False, channels_last: bool = False) -> None:
        """Run the denoiser faster, in place (the weights, their names and saving are unchanged).

        Args:
            compile: the UNet's forward through ``torch.compile`` (inductor's default mode, no CUDA graphs: a UNet
                step is compute-bound, so graphs save little, and they keep a static copy of its activations for
                each shape). The first decode at each new size or batch width compiles (tens of seconds), later
                ones reuse it.
            channels_last: the UNet's and autoencoder's convolution weights in channels-last layout (3-D kernels
                in ``channels_last_3d``), which tensor cores prefer; on a CPU it can be slower
                (``tools/bench/decoder_speed.py`` measures both).
        """
        if channels_last:
            for module in (self.unet, self.vae):
                for layer in module.modules():
                    if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
                        layout = torch.channels_last if isinstance(layer, nn.Conv2d) else torch.channels_last_3d
                        layer.to(memory_format=layout)  # type: ignore[call-overload]
        if compile:
            self.unet.compile()

    @staticmethod
    def fresh_scheduler(scheduler: Any, choice: str | None = None) -> Any:
        """A scheduler for one decode (they keep per-run state): a copy of ``scheduler``, or DPM-Solver++ from its
        config with ``choice="dpm_solver"`` (the settings' ``scheduler``)."""
        from diffusers import DPMSolverMultistepScheduler

        from ._libraries import quiet_loading

        kind = DPMSolverMultistepScheduler if choice == "dpm_solver" else type(scheduler)
        with quiet_loading():  # a DDIM config's own keys, which DPM-Solver ignores, are said at WARNING
            return kind.from_config(scheduler.config)

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)``, yielding each step number; returns the decoder-space output."""
        raise NotImplementedError

    def sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Decode features ``(batch, cond_dim)``; ``callback(step, total)`` runs after each step."""
        run = self.iter_sample(cond, steps=steps, guidance_scale=guidance_scale, generator=generator)
        while True:
            try:
                step = next(run)
            except StopIteration as done:
                return done.value
            if callback is not None:
                callback(step, steps)

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: Any = None,
        provenance: Provenance | None = None,
    ) -> list[Any]:
        """Turn :meth:`iter_sample`'s outputs into finished parts (at ``settings``' size or duration)."""
        raise NotImplementedError

    def iter_decode(
        self,
        cond: torch.Tensor,
        settings: MediaSettings,
        *,
        generator: torch.Generator | None = None,
        provenance: Provenance | None = None,
    ) -> Generator[int, None, list[Any]]:
        """Decode features ``(batch, cond_dim)`` with a modality's settings (steps, guidance, this kind's
        options, size or duration), yielding each step; returns the finished parts, whose provenance is
        ``provenance`` completed with the settings used."""
        steps, guidance = int(settings.steps or 1), float(settings.guidance_scale or 1.0)
        options = settings.model_dump(include=set(self.options))
        weights = next(self.parameters(), None)
        if weights is not None:  # the features meet the decoder on its device, in its dtype (bf16 on a GPU)
            cond = cond.to(weights.device, weights.dtype)
        outputs = yield from self.iter_sample(
            cond, steps=steps, guidance_scale=guidance, generator=generator, **options
        )
        made = (provenance or Provenance()).model_copy(update={"steps": steps, "guidance_scale": guidance, **options})
        return self.to_media(outputs.float(), generator=generator, settings=settings, provenance=made)

    @classmethod
    def build(cls, **args: Any) -> DiffusionDecoder:
        """A random-initialised decoder from its arguments."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> DiffusionDecoder:
        """Load a decoder from its folder."""
        raise NotImplementedError


ENCODER_KINDS: dict[str, Any] = {}
"""Encoder kind -> class (its ``build`` and ``from_pretrained`` give a :class:`MediaEncoder`)."""
DECODER_KINDS: dict[str, type[DiffusionDecoder]] = {}
"""Decoder kind -> class."""

EncoderClass = TypeVar("EncoderClass", bound=type[nn.Module])
DecoderClass = TypeVar("DecoderClass", bound=type[DiffusionDecoder])


def register_encoder(cls: EncoderClass) -> EncoderClass:
    """Make an encoder class available under its ``kind`` (each family's ``__init__`` registers its own)."""
    ENCODER_KINDS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def register_decoder(cls: DecoderClass) -> DecoderClass:
    """Make a decoder class available under its ``kind``."""
    DECODER_KINDS[cls.kind] = cls
    return cls


PLUGIN_GROUPS = {"encoder": "codi2_sdk.encoders", "decoder": "codi2_sdk.decoders"}
"""The entry-point groups where installed packages offer kinds of their own: a package that declares
``[project.entry-points."codi2_sdk.decoders"] my_decoder = "my_package.decoders:MyDecoder"`` makes checkpoints
that name ``my_decoder`` load (``LocalBackend.from_pretrained``, ``codi2 serve --model``) with no import."""


def kind_class(role: str, kind: str) -> Any:
    """The class registered for a ``role`` (``"encoder"`` or ``"decoder"``) of ``kind``: built in, registered in
    this process, or offered by an installed package under :data:`PLUGIN_GROUPS` (loaded on first use)."""
    registry: dict[str, Any] = ENCODER_KINDS if role == "encoder" else DECODER_KINDS  # type: ignore[assignment]
    if kind not in registry:
        _load_plugin(role, kind, registry)
    if kind not in registry:
        raise ModelError(
            f"unknown {role} kind {kind!r}; known kinds: {', '.join(sorted(registry))} (an installed package adds "
            f"kinds under the entry-point group '{PLUGIN_GROUPS[role]}')"
        )
    return registry[kind]


def _load_plugin(role: str, kind: str, registry: dict[str, Any]) -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=PLUGIN_GROUPS[role], name=kind):
        try:
            cls = point.load()
        except Exception as exc:  # the plugin's own import failed: say whose
            raise ModelError(f"the {role} kind {kind!r} from {point.value} cannot be loaded: {exc!r}") from exc
        registry.setdefault(kind, cls)  # importing it may have registered it already
        return


@overload
def build_kind(role: Literal["encoder"], kind: str, args: dict[str, Any]) -> MediaEncoder: ...
@overload
def build_kind(role: Literal["decoder"], kind: str, args: dict[str, Any]) -> DiffusionDecoder: ...
def build_kind(role: str, kind: str, args: dict[str, Any]) -> MediaEncoder | DiffusionDecoder:
    """A random-initialised ``role`` (``"encoder"`` or ``"decoder"``) of ``kind`` from its arguments."""
    return kind_class(role, kind).build(**args)  # type: ignore[no-any-return]


@overload
def load_kind(role: Literal["encoder"], kind: str, directory: Path) -> MediaEncoder: ...
@overload
def load_kind(role: Literal["decoder"], kind: str, directory: Path) -> DiffusionDecoder: ...
def load_kind(role: str, kind: str, directory: Path) -> MediaEncoder | DiffusionDecoder:
    """Load a ``role`` of ``kind`` from its folder."""
    return kind_class(role, kind).from_pretrained(directory)  # type: ignore[no-any-return]


register_encoder(FrameVideoEncoder)
