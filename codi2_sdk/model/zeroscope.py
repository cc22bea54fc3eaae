"""Zeroscope as the video decoder, the paper's choice (diffusers ``TextToVideoSDPipeline`` with a
``UNet3DConditionModel``).

The model's 1024-d feature is mapped to the pipeline's text conditioning (77 x 1024 CLIP-H states) by an
output projector (:class:`~codi2_sdk.model.pipelines.QueryProjector`); the unconditional embeddings are stored
with the decoder. Frames stream step by step and closing the iterator stops the pipeline at its next step.

The weights are CC-BY-NC (the user supplies the pipeline folder).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..config import VideoConfig
from ..content import Provenance, Video
from ..errors import ModelError
from .decoders import DiffusionDecoder
from .pipelines import QueryProjector, load_pipeline, stream_pipeline
from .registry import register_decoder

__all__ = ["ZeroscopeVideoDecoder"]

_WEIGHTS = "codi2_projectors.safetensors"
_META = "decoder.json"


@register_decoder
class ZeroscopeVideoDecoder(DiffusionDecoder):
    """A feature vector to a video clip through a text-to-video pipeline, via an output projector."""

    kind: ClassVar[str] = "zeroscope_video"
    modality = "video"
    options = ("num_frames", "size")

    to_prompt: QueryProjector
    negative_prompt_embeds: torch.Tensor

    def __init__(
        self,
        pipeline: Any,
        *,
        cond_dim: int,
        prompt_tokens: int = 77,
        num_frames: int = 24,
        size: int = 320,
        fps: float = 8.0,
        projector_width: int = 256,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.unet, self.vae = pipeline.unet, pipeline.vae
        self.cond_dim = cond_dim
        self.meta = {
            "cond_dim": cond_dim,
            "prompt_tokens": prompt_tokens,
            "num_frames": num_frames,
            "size": size,
            "fps": fps,
            "projector_width": projector_width,
        }
        width = int(pipeline.unet.config.cross_attention_dim)
        self.to_prompt = QueryProjector(cond_dim, width, prompt_tokens, width=projector_width)
        self.register_buffer("negative_prompt_embeds", torch.zeros(1, prompt_tokens, width))

    @classmethod
    def build(cls, **args: Any) -> ZeroscopeVideoDecoder:
        raise ModelError("a zeroscope_video decoder is made from a text-to-video pipeline folder, not from arguments")

    def save_pretrained(self, directory: str | Path) -> None:
        """The pipeline's own folder, plus the projector and unconditional embeddings and ``decoder.json``."""
        directory = Path(directory)
        self.pipeline.save_pretrained(str(directory))
        tensors = {f"to_prompt.{k}": v for k, v in self.to_prompt.state_dict().items()}
        tensors["negative_prompt_embeds"] = self.negative_prompt_embeds
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / _WEIGHTS))
        (directory / _META).write_text(json.dumps({"kind": self.kind, **self.meta}))

    @classmethod
    def from_pipeline(cls, directory: str | Path, *, cond_dim: int, **meta: Any) -> ZeroscopeVideoDecoder:
        """A decoder over a text-to-video pipeline folder (Zeroscope as published), with a new projector."""
        from diffusers import TextToVideoSDPipeline

        return cls(load_pipeline(TextToVideoSDPipeline, directory), cond_dim=cond_dim, **meta)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ZeroscopeVideoDecoder:
        from diffusers import TextToVideoSDPipeline

        directory = Path(directory)
        meta = json.loads((directory / _META).read_text())
        meta.pop("kind", None)
        decoder = cls(load_pipeline(TextToVideoSDPipeline, directory), **meta)
        decoder.load_state_dict(load_file(str(directory / _WEIGHTS)), strict=False)
        return decoder

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        num_frames: int | None = None,
        size: int | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)``, yielding each step; returns frames ``(batch, frames, 3, H, W)``
        in [0, 1]. ``num_frames`` and ``size`` (square side in pixels) default to the decoder's own."""
        with torch.no_grad():
            prompt = self.to_prompt(cond)
        side = int(size or self.meta["size"])

        def run(on_step: Any) -> torch.Tensor:
            out = self.pipeline(
                prompt_embeds=prompt,
                negative_prompt_embeds=self.negative_prompt_embeds.expand(len(cond), -1, -1).to(prompt),
                num_frames=int(num_frames or self.meta["num_frames"]),
                height=side,
                width=side,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=generator,
                output_type="pt",
                callback=on_step,
                callback_steps=1,
            )
            return torch.as_tensor(out.frames)

        return (yield from stream_pipeline(run, "video-decode"))

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: VideoConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Video]:
        fps = float(settings.fps if settings is not None and settings.fps else self.meta["fps"])
        pixels = (outputs.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        return [Video.from_frames(np.ascontiguousarray(clip), fps=fps, provenance=provenance) for clip in pixels]
