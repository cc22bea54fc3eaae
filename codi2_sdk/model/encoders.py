"""Input encoders: each turns a batch of one medium into a few feature vectors in the aligned space.

Every encoder returns ``(batch, tokens_per_item, width)``; token 0 is the pooled feature (CLS), the one
that stands for the whole medium. User-side media enter the LLM with all their tokens; media the model
writes (and example outputs) with the pooled one only, since that is what the output head predicts.

- :class:`CLIPImageEncoder` wraps transformers' ``CLIPVisionModelWithProjection`` (ImageBind-H's vision
  tower is OpenCLIP ViT-H/14: that checkpoint gives 257 x 1024 per image here).
- :class:`ImageBindImageEncoder` reads images as ImageBind's vision tower does (shortest side to 224, centre
  crop; its tokens at ImageBind's scale, the pooled one of unit norm).
- :class:`CNNImageEncoder` and :class:`CNNAudioEncoder` (log-mel) are the small encoders codi2-mini uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import PIL.Image
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..content import Audio, Image
from .audio_features import LogMel
from .registry import ENCODER_KINDS, register_encoder

__all__ = [
    "CLIPImageEncoder",
    "CNNAudioEncoder",
    "CNNImageEncoder",
    "FrameVideoEncoder",
    "ImageBindImageEncoder",
    "MediaEncoder",
    "audio_to_tensor",
    "image_to_tensor",
]

#: Normalisation of log-mel values (log of mel energy), shared by the audio encoder and decoder.
LOG_MEL_MEAN, LOG_MEL_STD = -6.0, 4.0


@runtime_checkable
class MediaEncoder(Protocol):
    """What the model needs of an encoder."""

    modality: str
    width: int
    tokens_per_item: int

    def preprocess(self, parts: list[Any]) -> torch.Tensor:
        """Decode a list of parts into one input tensor."""
        ...

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Features ``(batch, tokens_per_item, width)``, pooled feature first."""
        ...

    def save_pretrained(self, directory: str | Path) -> None: ...


def image_to_tensor(images: Sequence[Image | PIL.Image.Image], size: int, *, height: int | None = None) -> torch.Tensor:
    """Decode images (parts or PIL images) to ``(batch, 3, height, size)`` floats in [-1, 1] (RGB, bicubic resize);
    square (``size`` x ``size``) unless ``height`` is given."""
    arrays = []
    shape = (size, height or size)
    for image in images:
        pil = (image.to_pil() if isinstance(image, Image) else image).convert("RGB")
        if pil.size != shape:
            pil = pil.resize(shape, PIL.Image.Resampling.BICUBIC)
        arrays.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def audio_to_tensor(clips: list[Audio], sample_rate: int, num_samples: int) -> torch.Tensor:
    """Decode clips to mono ``(batch, num_samples)`` at ``sample_rate`` (cut or zero-padded), resampled with
    soxr's anti-aliasing filter: what lies above the new Nyquist frequency is removed, not folded down."""
    import soxr

    waves = np.zeros((len(clips), num_samples), dtype=np.float32)
    for i, clip in enumerate(clips):
        samples = clip.to_numpy()
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if clip.sample_rate != sample_rate:
            assert clip.sample_rate is not None
            samples = soxr.resample(samples.astype(np.float32), clip.sample_rate, sample_rate, quality="HQ")
        n = min(num_samples, len(samples))
        waves[i, :n] = samples[:n]
    return torch.from_numpy(waves)


def _conv_stack(in_channels: int, channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(in_channels, out, 3, stride=2, padding=1), nn.GroupNorm(min(8, out), out), nn.SiLU()]
        layers += [nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(min(8, out), out), nn.SiLU()]
        in_channels = out
    return nn.Sequential(*layers)


class _GridEncoder(ModelMixin, ConfigMixin):
    """A conv stack whose feature map is pooled to a ``grid x grid`` set of tokens plus one pooled token."""

    modality = ""

    @classmethod
    def build(cls, **args: Any) -> _GridEncoder:
        """A random-initialised encoder from its constructor's arguments."""
        return cls(**args)

    def _build(self, in_channels: int, channels: list[int], grid: int, width: int) -> None:
        self.convs = _conv_stack(in_channels, channels)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.token_proj = nn.Linear(channels[-1], width)
        self.pooled_proj = nn.Sequential(
            nn.Linear(channels[-1] * grid * grid, width), nn.GELU(), nn.Linear(width, width)
        )

    @property
    def width(self) -> int:
        return int(self.config["width"])

    @property
    def tokens_per_item(self) -> int:
        return 1 + int(self.config["grid"]) ** 2

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.pool(self.convs(x)).flatten(2).transpose(1, 2)  # (batch, grid*grid, channels)
        pooled = self.pooled_proj(grid.flatten(1))
        return torch.cat([pooled[:, None], self.token_proj(grid)], dim=1)


@register_encoder
class CNNImageEncoder(_GridEncoder):
    """A small convolutional image encoder (codi2-mini).

    ``detail_channels`` adds a texture branch: a conv stack over log-luminance (where a dark pattern on an
    object gives the same contrast whatever the object's colour), its responses' mean and maximum over the
    picture (where a texture is does not matter) added to the pooled token through a layer that starts at zero.
    An encoder trained without it gains it without changing a feature (codi2-mini's learns subjects' marks with
    it while its features of plain pictures stay what its decoders and LLM were trained on).
    """

    kind = "cnn_image"
    modality = "image"

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        width: int = 256,
        channels: tuple[int, ...] = (32, 64, 128),
        grid: int = 2,
        detail_channels: int = 0,
    ):
        super().__init__()
        self._build(3, list(channels), grid, width)
        self.detail: nn.Sequential | None = None
        if detail_channels:
            c = detail_channels
            self.detail = nn.Sequential(
                nn.Conv2d(1, c // 2, 3, padding=1), nn.SiLU(),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
                nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU(),
            )  # fmt: skip
            out = nn.Linear(4 * c, width)
            nn.init.zeros_(out.weight), nn.init.zeros_(out.bias)
            self.detail_proj = nn.Sequential(nn.Linear(2 * c, 4 * c), nn.GELU(), out)

    def preprocess(self, parts: list[Image]) -> torch.Tensor:
        return image_to_tensor(parts, int(self.config["image_size"]))

    def texture(self, pixels: torch.Tensor) -> torch.Tensor:
        """The texture branch's responses (their mean and maximum over the picture): ``(batch, 2 x
        detail_channels)``, what the encoder sees of surface detail wherever it lies."""
        if self.detail is None:
            raise ValueError("this encoder has no texture branch (detail_channels=0)")
        luminance = ((pixels + 1) / 2).mean(dim=1, keepdim=True)
        maps = self.detail(torch.log(luminance + 0.05)).flatten(2)
        return torch.cat([maps.mean(-1), maps.amax(-1)], dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self._encode(pixels)
        if self.detail is None:
            return tokens
        texture = self.detail_proj(self.texture(pixels))
        return torch.cat([tokens[:, :1] + texture[:, None], tokens[:, 1:]], dim=1)


@register_encoder
class CNNAudioEncoder(_GridEncoder):
    """A small convolutional encoder over normalised log-mel spectrograms (codi2-mini)."""

    kind = "cnn_audio"
    modality = "audio"

    @register_to_config
    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 64,
        frames: int = 64,
        width: int = 256,
        channels: tuple[int, ...] = (32, 64, 128),
        grid: int = 2,
        f_max: float | None = None,
    ):
        super().__init__()
        self.logmel = LogMel(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, frames=frames, f_max=f_max
        )
        self._build(1, list(channels), grid, width)

    def preprocess(self, parts: list[Audio]) -> torch.Tensor:
        return audio_to_tensor(parts, int(self.config["sample_rate"]), self.logmel.num_samples)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = (self.logmel(wave) - LOG_MEL_MEAN) / LOG_MEL_STD
        return self._encode(mel)


@register_encoder
class CLIPImageEncoder(nn.Module):
    """All tokens (CLS first) of a CLIP vision tower, through its projection.

    For OpenCLIP ViT-H/14 (ImageBind-H's vision tower) that is 257 tokens of 1024 per 224 x 224 image.
    """

    kind = "clip_image"
    modality = "image"
    _MEAN = (0.48145466, 0.4578275, 0.40821073)
    _STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config(cls, **clip_vision_args: Any) -> CLIPImageEncoder:
        """A random-initialised encoder from ``CLIPVisionConfig`` arguments."""
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_vision_args)))

    build = from_config

    @classmethod
    def from_pretrained(cls, path: str | Path) -> CLIPImageEncoder:
        """Load from a local folder (or a hub id already in the local cache); never downloads."""
        from transformers import CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True))

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(str(directory))

    @property
    def wrapped(self) -> nn.Module:
        """The module this encoder reads through (a checkpoint stores it once where it is shared)."""
        return self.model  # type: ignore[no-any-return]

    def wrapping_settings(self) -> dict[str, Any]:
        """What :meth:`wrapping` needs besides the wrapped module."""
        return {}

    @classmethod
    def wrapping(cls, module: Any, **settings: Any) -> CLIPImageEncoder:
        """This encoder over a tower loaded elsewhere (unCLIP's ``image_encoder``)."""
        return cls(module)

    @property
    def width(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def tokens_per_item(self) -> int:
        cfg = self.model.config
        return (cfg.image_size // cfg.patch_size) ** 2 + 1

    def preprocess(self, parts: Sequence[Image | PIL.Image.Image]) -> torch.Tensor:
        return self.normalize(image_to_tensor(parts, int(self.model.config.image_size)))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] to CLIP's normalised inputs."""
        mean = torch.tensor(self._MEAN).view(1, 3, 1, 1)
        std = torch.tensor(self._STD).view(1, 3, 1, 1)
        return ((pixels + 1) / 2 - mean) / std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model(pixel_values=pixels.to(self.model.dtype))
        # Every token through the final layer norm and the projection, as CLIP does for CLS alone.
        tokens = self.model.vision_model.post_layernorm(vision.last_hidden_state)
        return self.model.visual_projection(tokens)


def center_crop_resize(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Shortest side to ``size`` (bicubic), then the centred ``size x size`` square, as torchvision's
    ``Resize(size)`` + ``CenterCrop(size)`` in ImageBind's transform."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize(
        (max(size, int(width * scale)), max(size, int(height * scale))), PIL.Image.Resampling.BICUBIC
    )
    left = round((resized.width - size) / 2.0)
    top = round((resized.height - size) / 2.0)
    return resized.crop((left, top, left + size, top + size))


@register_encoder
class ImageBindImageEncoder(CLIPImageEncoder):
    """ImageBind-H's image reading over its vision tower (OpenCLIP ViT-H/14, the weights SD-2.1 unCLIP ships as
    ``image_encoder/``): shortest side to the tower's size and a centre crop (no stretching), CLIP's mean and
    std, and every token divided by the pooled token's norm, so the pooled feature is ImageBind's unit-norm
    embedding and the patch tokens keep their scale relative to it."""

    kind = "imagebind_image"

    def preprocess(self, parts: Sequence[Image | PIL.Image.Image]) -> torch.Tensor:
        size = int(self.model.config.image_size)
        pictures = [center_crop_resize((p.to_pil() if isinstance(p, Image) else p).convert("RGB"), size) for p in parts]
        return self.normalize(image_to_tensor(pictures, size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = super().forward(pixels)
        return tokens / tokens[:, :1].norm(dim=-1, keepdim=True).clamp_min(1e-6)


@register_encoder
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

    def __init__(self, image_encoder: Any, frames: int = 8, segments: int = 1) -> None:
        super().__init__()
        if frames % segments:
            raise ValueError(f"frames ({frames}) must split evenly into {segments} segments")
        self.image_encoder = image_encoder
        self.frames = frames
        self.segments = segments

    @classmethod
    def build(cls, **args: Any) -> FrameVideoEncoder:
        frames, segments = int(args.pop("frames", 8)), int(args.pop("segments", 1))
        tower = ENCODER_KINDS[args.pop("image_kind", "clip_image")]
        return cls(tower.build(**args), frames=frames, segments=segments)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FrameVideoEncoder:
        import json

        settings = json.loads((Path(path) / cls.FILE).read_text())
        tower = ENCODER_KINDS[settings.get("image_kind", "clip_image")]
        return cls(
            tower.from_pretrained(path), frames=int(settings["frames"]), segments=int(settings.get("segments", 1))
        )

    def save_pretrained(self, directory: str | Path) -> None:
        import json

        self.image_encoder.save_pretrained(directory)
        settings = {"frames": self.frames, "segments": self.segments, "image_kind": self.image_encoder.kind}
        (Path(directory) / self.FILE).write_text(json.dumps(settings))

    @property
    def wrapped(self) -> nn.Module:
        """The image encoder this reads frames with (a checkpoint stores it once where it is shared)."""
        return self.image_encoder  # type: ignore[no-any-return]

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
