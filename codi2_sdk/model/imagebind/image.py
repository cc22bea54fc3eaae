"""The CLIP image towers of the full-scale model.

- :class:`CLIPImageEncoder` wraps transformers' ``CLIPVisionModelWithProjection`` (ImageBind-H's vision
  tower is OpenCLIP ViT-H/14: that checkpoint gives 257 x 1024 per image here).
- :class:`ImageBindImageEncoder` reads images as ImageBind's vision tower does (shortest side to 224, centre
  crop; its tokens at ImageBind's scale, the pooled one of unit norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from torch import nn

from ...content import Image
from ..media_io import center_crop_resize, image_to_tensor, rgb_picture

__all__ = ["CLIPImageEncoder", "ImageBindImageEncoder"]


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


class ImageBindImageEncoder(CLIPImageEncoder):
    """ImageBind-H's image reading over its vision tower (OpenCLIP ViT-H/14, the weights SD-2.1 unCLIP ships as
    ``image_encoder/``): shortest side to the tower's size and a centre crop (no stretching), CLIP's mean and
    std, and every token divided by the pooled token's norm, so the pooled feature is ImageBind's unit-norm
    embedding and the patch tokens keep their scale relative to it."""

    kind = "imagebind_image"

    def preprocess(self, parts: Sequence[Image | PIL.Image.Image]) -> torch.Tensor:
        size = int(self.model.config.image_size)
        pictures = [center_crop_resize(rgb_picture(p), size) for p in parts]
        return self.normalize(image_to_tensor(pictures, size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = super().forward(pixels)
        return tokens / tokens[:, :1].norm(dim=-1, keepdim=True).clamp_min(1e-6)
