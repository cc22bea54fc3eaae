"""Stable Diffusion 2.1 unCLIP as the image decoder, the paper's choice (diffusers ``StableUnCLIPImg2ImgPipeline``)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from ._quiet import quiet_loading
from .decoders import DiffusionDecoder, PixelOutputs
from .pipelines import load_pipeline, stream_pipeline
from .registry import register_decoder

__all__ = ["UnCLIPImageDecoder"]


@register_decoder
class UnCLIPImageDecoder(PixelOutputs, DiffusionDecoder):
    """Stable Diffusion 2.1 unCLIP (diffusers ``StableUnCLIPImg2ImgPipeline``) as the image decoder, the
    paper's choice: the predicted feature is given as ``image_embeds`` directly, with the encoded empty prompt
    as the text on both sides of classifier-free guidance (the pipeline's own unconditional image embedding is
    zeros), as CoDi-2's code runs it.

    The folder is the pipeline's own diffusers layout (``model_index.json``, ``unet/``, ``vae/``, ...); an
    empty-prompt embedding is computed with its text encoder, or read from ``prompt_embeds.safetensors``
    when the pipeline is saved without one. The pipeline runs in a worker thread so that progress
    events stream out step by step; closing the iterator stops it at the next step.
    """

    kind: ClassVar[str] = "unclip_image"
    options = ("noise_level",)
    PROMPT_FILE = "prompt_embeds.safetensors"
    prompt_embeds: torch.Tensor

    def __init__(self, pipeline: Any, prompt_embeds: torch.Tensor | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.unet = pipeline.unet  # registered, so .to() and .parameters() see the weights
        self.vae = pipeline.vae
        self.image_normalizer = pipeline.image_normalizer
        self.cond_dim = int(pipeline.image_normalizer.mean.shape[-1])
        if prompt_embeds is None:
            prompt_embeds, _ = pipeline.encode_prompt("", "cpu", 1, False)
        self.register_buffer("prompt_embeds", prompt_embeds.detach(), persistent=False)

    @property
    def embedding_norm(self) -> float:
        """The typical norm of the CLIP image embeddings the pipeline was trained on, from its image normaliser's
        per-dimension mean and std: the scale a unit-norm predicted feature is restored to."""
        mean, std = self.image_normalizer.mean.detach().float(), self.image_normalizer.std.detach().float()
        return float((mean.square() + std.square()).sum().sqrt())

    @classmethod
    def build(cls, **args: Any) -> UnCLIPImageDecoder:
        raise ModelError("an unclip_image decoder is loaded from a diffusers folder, not built from arguments")

    @quiet_loading()
    def save_pretrained(self, directory: str | Path) -> None:
        self.pipeline.save_pretrained(str(directory))
        save_file({"prompt_embeds": self.prompt_embeds.contiguous().cpu()}, str(Path(directory) / self.PROMPT_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> UnCLIPImageDecoder:
        from diffusers import StableUnCLIPImg2ImgPipeline

        pipeline = load_pipeline(StableUnCLIPImg2ImgPipeline, directory)
        saved = Path(directory) / cls.PROMPT_FILE
        embeds = load_file(str(saved))["prompt_embeds"] if saved.exists() and pipeline.text_encoder is None else None
        return cls(pipeline, embeds)

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        noise_level: int | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Like :meth:`LatentDiffusionDecoder.iter_sample`; ``noise_level`` is unCLIP's (0 to 1000)."""

        def run(on_step: Any) -> torch.Tensor:
            embeds = self.prompt_embeds.to(cond.device).expand(len(cond), -1, -1)
            out = self.pipeline(
                prompt_embeds=embeds,
                negative_prompt_embeds=embeds,
                image_embeds=cond,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                noise_level=int(noise_level or 0),
                generator=generator,
                output_type="pt",
                callback=on_step,
                callback_steps=1,
            )
            return out.images * 2 - 1

        return (yield from stream_pipeline(run, "unclip-decode"))
