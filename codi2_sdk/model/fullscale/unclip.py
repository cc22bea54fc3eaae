"""Stable Diffusion 2.1 unCLIP as the image decoder, the paper's choice (diffusers ``StableUnCLIPImg2ImgPipeline``)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import PIL.Image
import torch
from safetensors.torch import load_file, save_file

from ...errors import ModelError
from .._libraries import quiet_loading
from ..media_io import PixelOutputs
from ..parts import DiffusionDecoder
from .pipelines import PipelineParts, load_pipeline

__all__ = ["REFERENCE_NEGATIVE_PROMPT", "REFERENCE_NOISE_LEVEL", "UnCLIPImageDecoder", "norm_pictures"]


REFERENCE_NEGATIVE_PROMPT = (
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, worst quality, "
    "low quality"
)
"""The text CoDi-2's released code conditions unCLIP on, on both sides of guidance (microsoft/i-Code,
``CoDi-2/core/models/mmllama/openllama.py``, ``generate_image``: ``uc_encoder`` is this prompt's encoding, given as
``c_crossattn`` to the conditional and the unconditional branch alike)."""


REFERENCE_NOISE_LEVEL = 500
"""The noise level CoDi-2's released code gives unCLIP's image embedding (the same ``generate_image``:
``noise_augmentor.max_noise_level * 0.5``, with ``max_noise_level`` 1000)."""


def norm_pictures() -> list[PIL.Image.Image]:
    """Eight fixed pictures (shapes on plain and textured grounds) the image embedding scale is measured on."""
    import numpy as np
    import PIL.ImageDraw

    rng = np.random.default_rng(0)
    pictures = []
    for index, colour in enumerate(["red", "navy", "forestgreen", "gold", "white", "black", "orchid", "teal"]):
        ground = (
            rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) if index % 2 else np.full((224, 224, 3), 235, np.uint8)
        )
        picture = PIL.Image.fromarray(ground)
        draw = PIL.ImageDraw.Draw(picture)
        box = (40 + 8 * index, 50, 180, 170 - 4 * index)
        (draw.ellipse if index % 3 else draw.rectangle)(box, fill=colour)
        pictures.append(picture)
    return pictures


class UnCLIPImageDecoder(PixelOutputs, PipelineParts, DiffusionDecoder):
    """Stable Diffusion 2.1 unCLIP (diffusers ``StableUnCLIPImg2ImgPipeline``) as the image decoder, the
    paper's choice, run as CoDi-2's released code runs it: the predicted feature is given as ``image_embeds``
    directly (noised to :data:`REFERENCE_NOISE_LEVEL` by the assembled model's defaults), with
    :data:`REFERENCE_NEGATIVE_PROMPT` encoded as the text on both sides of classifier-free guidance (the
    pipeline's own unconditional image embedding is zeros, as the reference's). ``prompt=""`` and
    ``noise_level=0`` give the pipeline's own defaults.

    The folder is the pipeline's own diffusers layout (``model_index.json``, ``unet/``, ``vae/``, ...); the prompt's
    embedding is computed with its text encoder once and saved as ``prompt_embeds.safetensors``, which a folder
    without a text encoder must have. The pipeline runs step by step on the caller's thread (a greenlet), so that
    progress events stream out as it goes; closing the iterator stops it after the step it is at.
    """

    kind: ClassVar[str] = "unclip_image"
    options = (*DiffusionDecoder.options, "noise_level")
    PROMPT_FILE = "prompt_embeds.safetensors"
    prompt_embeds: torch.Tensor
    image_normalizer: Any

    def __init__(
        self, pipeline: Any, prompt_embeds: torch.Tensor | None = None, *, prompt: str = REFERENCE_NEGATIVE_PROMPT
    ) -> None:
        super().__init__()
        self.register_components(pipeline)  # unet, vae, normaliser, CLIP towers: .to() moves them all
        self.cond_dim = int(pipeline.image_normalizer.mean.shape[-1])
        if prompt_embeds is None:
            encoded = self.encode_prompt(pipeline, prompt) if pipeline.text_encoder is not None else None
            if encoded is None:
                raise ModelError(
                    f"the unCLIP folder has no text encoder and no {self.PROMPT_FILE}: its prompt cannot be encoded"
                )
            prompt_embeds = encoded[0]
        self.register_buffer("prompt_embeds", prompt_embeds.detach().float(), persistent=False)

    @torch.no_grad()
    def measure_embedding_norm(self, pictures: Sequence[PIL.Image.Image]) -> float:
        """The mean norm of the CLIP image embeddings unCLIP is conditioned on, read by the pipeline's own image
        encoder and feature extractor from ``pictures``: the scale a unit-norm predicted feature is restored to."""
        encoder = self.pipeline.image_encoder
        pixels = self.pipeline.feature_extractor(images=list(pictures), return_tensors="pt").pixel_values
        embeds = encoder(pixels.to(encoder.device, encoder.dtype)).image_embeds.float()
        return float(embeds.norm(dim=-1).mean())

    @classmethod
    def build(cls, **args: Any) -> UnCLIPImageDecoder:
        raise ModelError("an unclip_image decoder is loaded from a diffusers folder, not built from arguments")

    @quiet_loading()
    def save_pretrained(self, directory: str | Path) -> None:
        self.pipeline.save_pretrained(str(directory))
        save_file({"prompt_embeds": self.prompt_embeds.contiguous().cpu()}, str(Path(directory) / self.PROMPT_FILE))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        variant: str | None = None,
        dtype: torch.dtype | None = None,
        prompt: str = REFERENCE_NEGATIVE_PROMPT,
    ) -> UnCLIPImageDecoder:
        """The decoder over an unCLIP folder (``variant``: its ``fp16`` files, say). A folder this class saved keeps
        the prompt embedding it was saved with; a published one encodes ``prompt``."""
        from diffusers import StableUnCLIPImg2ImgPipeline

        pipeline = load_pipeline(StableUnCLIPImg2ImgPipeline, directory, variant=variant, dtype=dtype)
        saved = Path(directory) / cls.PROMPT_FILE
        embeds = load_file(str(saved))["prompt_embeds"] if saved.exists() else None
        return cls(pipeline, embeds, prompt=prompt)

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        noise_level: int | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Like :meth:`LatentDiffusionDecoder.iter_sample`; ``noise_level`` is unCLIP's (0 to 1000)."""

        embeds = self.prompt_embeds.to(cond.device, self.unet.dtype).expand(len(cond), -1, -1)
        return (
            yield from self.stream_call(
                "unclip-decode",
                scheduler,
                lambda out: out.images.float() * 2 - 1,
                prompt_embeds=embeds,
                negative_prompt_embeds=embeds,
                image_embeds=cond.to(self.unet.dtype),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                noise_level=int(noise_level or 0),
                generator=generator,
                output_type="pt",
            )
        )
