"""ImageBind-H's video reading in plain torch, and the official checkpoint's vision weights loaded by renaming keys.

As the official code reads a video (``load_and_transform_video_data`` and the vision modality of
``imagebind_huge``): five 2 s clips spread evenly over the video (the whole video when it is shorter), two frames
taken evenly from each clip, the shorter side scaled to 224 and CLIP's mean and std, three 224 x 224 crops along
the longer side (left or top, centre, right or bottom): 15 views of ``(3, 2, 224, 224)``. Each view goes through
the vision trunk: a ``Conv3d(3, 1280, (2, 14, 14))`` stem (one temporal patch), a CLS token and learned positions,
a LayerNorm, 32 pre-norm blocks of 1280 with 16 heads, LayerNorm, the CLS token, ``Linear(1280, 1024)``,
L2-normalised; the mean over the 15 views is the video's feature.

ImageBind-H's vision trunk is OpenCLIP ViT-H/14 with its patch kernel inflated over two frames, and it reads a
picture as a clip of that picture twice. Where the two kernel slices sum to the 2-D kernel, a repeated frame gives
CLIP's own patch embedding: :func:`stem_matches_image_tower` measures that for a checkpoint (docs/full-scale.md).

The weights are CC-BY-NC-SA (the user supplies ``imagebind_huge.pth``; nothing here downloads it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from ...content import Video
from ...errors import ModelError
from .audio import _Block, load_official_weights, official_name
from .image import CLIPImageEncoder

__all__ = [
    "ImageBindVideoEncoder",
    "has_vision_weights",
    "load_imagebind_video",
    "official_video_key",
    "stem_matches_image_tower",
]


CLIP_MEAN, CLIP_STD = CLIPImageEncoder._MEAN, CLIPImageEncoder._STD


class ImageBindVideoEncoder(ModelMixin, ConfigMixin):
    """ImageBind's video reading: video clips in, one 1024-d unit-norm feature each (the mean over 15 views)."""

    kind = "imagebind_video"
    modality = "video"

    @register_to_config
    def __init__(
        self,
        embed_dim: int = 1280,
        num_blocks: int = 32,
        num_heads: int = 16,
        out_dim: int = 1024,
        image_size: int = 224,
        patch_size: int = 14,
        frames_per_clip: int = 2,
        clip_seconds: float = 2.0,
        clips: int = 5,
        crops: int = 3,
    ) -> None:
        super().__init__()
        kernel = (frames_per_clip, patch_size, patch_size)
        self.stem = nn.Conv3d(3, embed_dim, kernel, stride=kernel, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (image_size // patch_size) ** 2, embed_dim))
        nn.init.normal_(self.cls_token, std=embed_dim**-0.5)
        nn.init.normal_(self.pos_embed, std=embed_dim**-0.5)
        self.pre_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, add_bias_kv=False) for _ in range(num_blocks))
        self.head_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_proj = nn.Linear(embed_dim, out_dim, bias=False)

    @classmethod
    def build(cls, **args: Any) -> ImageBindVideoEncoder:
        return cls(**args)

    @property
    def width(self) -> int:
        return int(self.config["out_dim"])

    @property
    def tokens_per_item(self) -> int:
        return 1

    # -- input --------------------------------------------------------------------------------------

    def clip_frames(self, count: int, fps: float) -> list[list[int]]:
        """Which frames each clip takes, for a video of ``count`` frames at ``fps``: ``clips`` clips of
        ``clip_seconds`` spread evenly (the official constant-clips sampler), ``frames_per_clip`` frames spread
        evenly over each (its uniform temporal subsampling)."""
        length, clips = float(self.config["clip_seconds"]), int(self.config["clips"])
        duration = count / fps
        taken = []
        for i in range(clips):
            start = max(duration - length, 0.0) * i / max(clips - 1, 1)
            first = min(int(start * fps), count - 1)
            last = max(first, min(int(np.ceil((start + length) * fps)) - 1, count - 1))
            taken.append(np.linspace(first, last, int(self.config["frames_per_clip"])).round().astype(int).tolist())
        return taken

    def views(self, frames: np.ndarray) -> torch.Tensor:
        """One clip's frames ``(frames, H, W, 3)`` uint8 to its ``crops`` views ``(crops, 3, frames, size, size)``:
        the shorter side to ``image_size`` (bilinear), CLIP's normalisation, crops along the longer side."""
        size = int(self.config["image_size"])
        clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0  # (3, T, H, W)
        height, width = clip.shape[-2:]
        scale = size / min(height, width)
        shape = (max(size, round(height * scale)), max(size, round(width * scale)))
        clip = F.interpolate(clip, size=shape, mode="bilinear", align_corners=False)
        mean, std = torch.tensor(CLIP_MEAN)[:, None, None, None], torch.tensor(CLIP_STD)[:, None, None, None]
        clip = (clip - mean) / std
        crops, out = int(self.config["crops"]), []
        long_axis = -1 if shape[1] >= shape[0] else -2
        spare = shape[1 if long_axis == -1 else 0] - size
        for i in range(crops):
            offset = round(spare * i / max(crops - 1, 1)) if crops > 1 else spare // 2
            out.append(clip.narrow(long_axis, offset, size).narrow(-1 if long_axis == -2 else -2, 0, size))
        return torch.stack(out)

    def preprocess(self, parts: list[Video]) -> torch.Tensor:
        """Videos to ``(batch, clips x crops, 3, frames_per_clip, image_size, image_size)``."""
        batch = []
        for part in parts:
            frames = part.to_frames()
            clips = [self.views(frames[picks]) for picks in self.clip_frames(len(frames), float(part.fps or 1.0))]
            batch.append(torch.cat(clips))
        return torch.stack(batch)

    # -- network ------------------------------------------------------------------------------------

    def embed_views(self, views: torch.Tensor) -> torch.Tensor:
        """Views ``(n, 3, frames, size, size)`` to unit-norm embeddings ``(n, out_dim)``."""
        tokens = self.stem(views.to(self.dtype)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        tokens = self.pre_norm(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        return F.normalize(self.head_proj(self.head_norm(tokens)[:, 0]), dim=-1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """``(batch, views, 3, frames, size, size)`` to ``(batch, 1, out_dim)``: the mean of the views' embeddings."""
        batch, count = views.shape[:2]
        return self.embed_views(views.flatten(0, 1)).view(batch, count, -1).mean(dim=1, keepdim=True)


_PREFIXES = {
    "modality_preprocessors.vision.rgbt_stem.proj.1.": "stem.",
    "modality_preprocessors.vision.pos_embedding_helper.pos_embed": "pos_embed",
    "modality_preprocessors.vision.cls_token": "cls_token",
    "modality_trunks.vision.pre_transformer_layer.0.": "pre_norm.",
    "modality_trunks.vision.blocks.": "blocks.",
    "modality_heads.vision.0.": "head_norm.",
    "modality_heads.vision.2.": "head_proj.",
}


def official_video_key(key: str) -> str:
    """The official checkpoint's name for one of this module's parameters."""
    return official_name(key, _PREFIXES)


def load_imagebind_video(path: str | Path | dict[str, Any], **config: Any) -> ImageBindVideoEncoder:
    """The video reading with the vision weights of an official ImageBind checkpoint (``imagebind_huge.pth``, any
    state dict with the official key names, or that state dict already read); ``config`` overrides the huge model's
    shape (tests use tiny ones).

    Raises:
        ModelNotFoundError: no file at ``path``.
        ModelError: the file lacks vision weights, or they do not fit (the message names the keys).
    """
    return load_official_weights(ImageBindVideoEncoder(**config), _PREFIXES, path, "vision")  # type: ignore[no-any-return]


def has_vision_weights(state: dict[str, Any]) -> bool:
    """Whether an ImageBind state dict holds the vision trunk (the official huge checkpoint does)."""
    return any(key.startswith("modality_trunks.vision.") for key in state)


def stem_matches_image_tower(video: ImageBindVideoEncoder, tower: Any) -> float:
    """The largest difference between the video stem's kernel summed over its frames (what it computes on a
    repeated frame) and the CLIP image tower's 2-D patch kernel, relative to the kernel's largest weight: 0 where
    ImageBind's reading of a picture is CLIP's own (``tower``: a transformers ``CLIPVisionModel`` or
    ``CLIPVisionModelWithProjection``)."""
    summed = video.stem.weight.detach().float().sum(dim=2)
    flat = tower.vision_model.embeddings.patch_embedding.weight.detach().float()
    if summed.shape != flat.shape:
        raise ModelError(
            f"the video stem's kernel {tuple(summed.shape)} and the image tower's {tuple(flat.shape)} differ"
        )
    return float((summed - flat).abs().max() / flat.abs().max().clamp_min(1e-12))
