"""Zeroscope as the video decoder, the paper's choice (diffusers ``TextToVideoSDPipeline`` with a
``UNet3DConditionModel``).

The model's 1024-d feature is mapped to the pipeline's text conditioning (77 x 1024 CLIP-H states) by an
output projector (:class:`~codi2_sdk.model.fullscale.pipelines.QueryProjector`); the unconditional side of guidance is the
encoded empty prompt, stored with the decoder. Clips are 576 x 320 by default, Zeroscope v2 576w's native size. Frames stream step by step and closing the iterator stops the pipeline at its next step.

The weights are CC-BY-NC (the user supplies the pipeline folder).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch

from ...config import VideoConfig
from ...content import Provenance, Video
from ..media_io import frames_to_videos, image_to_tensor
from .pipelines import PipelineDecoder, QueryProjector, fit_tokens

__all__ = ["ZeroscopeVideoDecoder"]


log = logging.getLogger(__name__)


@functools.cache
def _say_the_pipeline_is_deprecated() -> None:
    """diffusers marks ``TextToVideoSDPipeline`` deprecated (no fixes after 0.33.1) and says so on every build;
    it is still the class Zeroscope's weights load into. Said once, at INFO (shown when asked for)."""
    log.info(
        "Zeroscope runs on diffusers' TextToVideoSDPipeline, which diffusers no longer fixes (after 0.33.1); "
        "codi2-sdk tests it with the diffusers version it pins"
    )


class ZeroscopeVideoDecoder(PipelineDecoder):
    """A feature vector to a video clip through a text-to-video pipeline, via an output projector."""

    pipeline_class = "TextToVideoSDPipeline"
    also_accepts = ("VideoToVideoSDPipeline",)  # zeroscope_v2_XL is published as one: the same UNet3D, VAE and CLIP
    kind: ClassVar[str] = "zeroscope_video"
    modality = "video"
    options = (*PipelineDecoder.options, "num_frames", "size", "width", "height")

    to_prompt: QueryProjector
    negative_prompt_embeds: torch.Tensor

    def __init__(
        self,
        pipeline: Any,
        *,
        cond_dim: int,
        prompt_tokens: int = 77,
        num_frames: int = 24,
        width: int = 576,
        height: int = 320,
        fps: float = 8.0,
        projector_width: int = 256,
        size: int | None = None,
    ) -> None:
        """``width`` x ``height`` is the frame size clips are made at by default: Zeroscope v2 576w was trained at
        576 x 320; ``size`` (older checkpoints) makes it square."""
        super().__init__()
        _say_the_pipeline_is_deprecated()
        self.register_components(pipeline)  # unet, vae, the CLIP text encoder: .to() moves them all
        self.cond_dim = cond_dim
        if size is not None:
            width = height = size
        self.meta = {
            "cond_dim": cond_dim,
            "prompt_tokens": prompt_tokens,
            "num_frames": num_frames,
            "width": width,
            "height": height,
            "fps": fps,
            "projector_width": projector_width,
        }
        states = int(pipeline.unet.config.cross_attention_dim)
        self.to_prompt = QueryProjector(cond_dim, states, prompt_tokens, width=projector_width)
        # The unconditional side of guidance: the encoded empty prompt, as the pipeline runs by default (computed
        # once, stored with the projectors)
        empty = self.encode_prompt(pipeline, "")
        negative = torch.zeros(1, prompt_tokens, states) if empty is None else fit_tokens(empty[0], prompt_tokens)
        self.register_buffer("negative_prompt_embeds", negative.float())

    def conditioning(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prompt_embeds": self.to_prompt(features)}

    def _caption_conditioning(self, captions: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        device = self.negative_prompt_embeds.device
        prompt, _ = self.pipeline.encode_prompt(captions, device, 1, False)
        return {"prompt_embeds": (prompt, torch.ones(prompt.shape[:2], device=device))}

    def latents(self, parts: list[Video]) -> torch.Tensor:
        """``num_frames`` frames spread over each clip at the decoder's frame size, each through the image VAE:
        ``(batch, channels, frames, h, w)``."""
        count, width, height = int(self.meta["num_frames"]), int(self.meta["width"]), int(self.meta["height"])
        clips = []
        for part in parts:
            frames = part.to_frames()
            picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
            clips.append(image_to_tensor([PIL.Image.fromarray(frames[i]) for i in picks], width, height=height))
        pixels = torch.stack(clips).to(self.negative_prompt_embeds.device, self.vae.dtype)  # (batch, frames, 3, H, W)
        latents = self.vae.encode(pixels.flatten(0, 1)).latent_dist.mode() * self.vae.config.scaling_factor
        return latents.unflatten(0, (len(parts), count)).transpose(1, 2)

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.unet(noisy, timesteps, encoder_hidden_states=conditioning["prompt_embeds"], return_dict=False)[0]

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        num_frames: int | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)``, yielding each step; returns frames ``(batch, frames, 3, H, W)``
        in [0, 1]. ``num_frames`` and the frame size default to the decoder's own; ``size`` asks for square frames,
        ``width`` / ``height`` for either side."""
        with torch.no_grad():
            prompt = self.conditioning(cond)["prompt_embeds"]

        return (
            yield from self.stream_call(
                "video-decode",
                scheduler,
                lambda out: torch.as_tensor(out.frames).float(),
                prompt_embeds=prompt,
                negative_prompt_embeds=self.negative_prompt_embeds.expand(len(cond), -1, -1).to(prompt),
                num_frames=int(num_frames or self.meta["num_frames"]),
                height=int(height or size or self.meta["height"]),
                width=int(width or size or self.meta["width"]),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=generator,
                output_type="pt",
            )
        )

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: VideoConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Video]:
        # the pipeline already made frames at the asked size
        settings = settings.model_copy(update={"size": None, "width": None, "height": None}) if settings else None
        return frames_to_videos(outputs * 2 - 1, settings=settings, fps=float(self.meta["fps"]), provenance=provenance)
