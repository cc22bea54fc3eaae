"""codi2-mini's encoders: small CNNs over pictures (:class:`CNNImageEncoder`) and log-mel spectrograms
(:class:`CNNAudioEncoder`), each giving a pooled feature and a grid of detail tokens."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ...content import Audio, Image
from ..media_io import LogMel, audio_to_tensor, image_to_tensor

__all__ = ["CNNAudioEncoder", "CNNImageEncoder"]


#: Normalisation of log-mel values (log of mel energy), shared by the audio encoder and decoder.
LOG_MEL_MEAN, LOG_MEL_STD = -6.0, 4.0


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
