"""codi2-mini's diffusion decoders: latent diffusion built from diffusers parts.

:class:`LatentDiffusionDecoder` is an ``AutoencoderKL``, a ``UNet2DConditionModel`` conditioned on the feature
vector twice (``class_embed_type="projection"`` and one cross-attention token), and a diffusers scheduler (DDIM by
default), with classifier-free guidance against the zero vector (the decoder is trained with condition dropout to
zeros). :class:`ImageDecoder` turns its output into pictures; :class:`AudioDecoder` runs it over normalised
log-mel spectrograms and inverts them with Griffin-Lim; :class:`VideoDecoder` is Zeroscope's design at small
scale. The paper's decoders are in :mod:`codi2_sdk.model.fullscale`.

A latent decoder's folder is a diffusers pipeline folder (``model_index.json``, ``vae/``, ``unet/``,
``scheduler/``, written and read by :class:`LatentDiffusionPipeline`), plus ``decoder.json``.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import diffusers
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel, UNet3DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from ...config import AudioConfig, VideoConfig
from ...content import Audio, Provenance, Video
from .._libraries import quiet_loading
from ..media_io import LogMel, PixelOutputs, frames_to_videos, griffin_lim, waves_to_clips
from ..parts import DiffusionDecoder
from ..runtime.batching import current_batcher
from .encoders import LOG_MEL_MEAN, LOG_MEL_STD

__all__ = ["AudioDecoder", "ImageDecoder", "LatentDiffusionDecoder", "LatentDiffusionPipeline"]


class LatentDiffusionPipeline(DiffusionPipeline):
    """The parts of a latent decoder as a diffusers pipeline: how its folder is written and read."""

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel | UNet3DConditionModel, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler)


class LatentDiffusionDecoder(DiffusionDecoder):
    """Latent diffusion conditioned on one feature vector per sample."""

    unet_class: ClassVar[type] = UNet2DConditionModel

    def __init__(self, vae: AutoencoderKL, unet: Any, scheduler: Any, *, cond_dim: int, **extra: Any):
        super().__init__()
        self.vae, self.unet, self.scheduler = vae, unet, scheduler
        self.cond_dim = cond_dim
        self.extra = extra

    # -- building and files ----------------------------------------------------------------------

    @classmethod
    def build(  # type: ignore[override]
        cls, *, cond_dim: int, vae: dict[str, Any], unet: dict[str, Any], scheduler: dict[str, Any], **extra: Any
    ) -> LatentDiffusionDecoder:
        """A random-initialised decoder from the parts' diffusers configs (a DDIM scheduler unless the
        scheduler config names its ``_class_name``)."""
        scheduler_cls = getattr(diffusers, scheduler.get("_class_name", "DDIMScheduler"))
        return cls(
            AutoencoderKL(**vae),
            cls.unet_class(**unet),
            scheduler_cls.from_config(scheduler),
            cond_dim=cond_dim,
            **extra,
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the pipeline folder and ``decoder.json``."""
        directory = Path(directory)
        LatentDiffusionPipeline(self.vae, self.unet, self.scheduler).save_pretrained(str(directory))
        (directory / "decoder.json").write_text(
            json.dumps({"kind": self.kind, "cond_dim": self.cond_dim, **self.extra})
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LatentDiffusionDecoder:
        """Load a decoder written by :meth:`save_pretrained` (never downloads)."""
        directory = Path(directory)
        meta = json.loads((directory / "decoder.json").read_text())
        meta.pop("kind")
        with quiet_loading():
            pipeline = LatentDiffusionPipeline.from_pretrained(str(directory), local_files_only=True)
        return cls(pipeline.vae, pipeline.unet, pipeline.scheduler, **meta)

    # -- diffusion -------------------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, ...]:
        size = int(self.unet.config.sample_size)
        return (int(self.unet.config.in_channels), size, size)

    def _unet(self, latents: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(latents, t, encoder_hidden_states=cond[:, None, :], class_labels=cond).sample

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latent means of decoder-space inputs ``x`` (for training the UNet)."""
        return self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor

    def diffusion_loss(
        self, latents: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's training loss: ``latents`` (scaled, see :meth:`encode_latents`) noised with ``noise`` at
        ``timesteps``, conditioned on features ``cond`` (zero rows train the unconditional branch that
        guidance uses); the target is the velocity or the noise, as the scheduler predicts."""
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return nn.functional.mse_loss(self._unet(noisy, timesteps, cond), target)

    @torch.no_grad()
    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)`` (with ``scheduler``'s sampler, see :meth:`fresh_scheduler`),
        yielding the step number after each step.

        Returns (as the generator's value) decoder-space outputs: pixels in [-1, 1], or normalised log-mel.
        Closing the generator between steps cancels the decode.
        """
        cond = cond.to(self.unet.dtype)
        # randn_tensor draws on the generator's device (CPU by default): a seed gives the same bytes anywhere
        latents = randn_tensor((len(cond), *self.latent_shape), generator=generator, device=cond.device)
        latents = latents.to(dtype=cond.dtype)
        # a fresh one: a scheduler keeps per-run state, and one decoder may serve several runs
        sampler = self.fresh_scheduler(self.scheduler, scheduler)
        sampler.set_timesteps(steps, device=cond.device)
        latents = latents * sampler.init_noise_sigma
        guided = guidance_scale != 1.0
        both = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        for i, t in enumerate(sampler.timesteps):
            model_in = sampler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
            out = self._denoise(model_in, t, both)
            if guided:
                uncond, conditioned = out.chunk(2)
                out = uncond + guidance_scale * (conditioned - uncond)
            latents = sampler.step(out, t, latents, generator=generator).prev_sample
            yield i + 1
        return self.decode_latents(latents)

    def _denoise(self, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One UNet call of a decode: with other generations' when a
        :class:`~codi2_sdk.model.runtime.batching.StepBatcher` is in use (:meth:`denoise_together`), else alone."""
        batcher = current_batcher()
        if batcher is None:
            return self._unet(latents, t, cond)
        key = ("denoise", id(self), tuple(latents.shape), tuple(cond.shape), latents.dtype)
        return batcher.run(key, self.denoise_together, (latents, t, cond))

    def denoise_together(self, items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], width: int) -> list:
        """Several decodes' UNet calls ``(latents, timestep, cond)`` as one of ``width`` decodes (the batcher's step;
        each decode may be at its own timestep), padded with copies of the first."""
        rows = [*items, *[items[0]] * (width - len(items))]
        latents = torch.cat([latent for latent, _, _ in rows])
        cond = torch.cat([c for _, _, c in rows])
        t = torch.cat(
            [torch.as_tensor(step, device=latents.device).reshape(1).expand(len(lat)) for lat, step, _ in rows]
        )
        out = self._unet(latents, t, cond)
        return list(out.split(len(items[0][0])))[: len(items)]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents back to the decoder's space (the inverse of :meth:`encode_latents`)."""
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


class ImageDecoder(PixelOutputs, LatentDiffusionDecoder):
    """Latent diffusion to RGB pictures."""

    kind = "latent_image"


class AudioDecoder(LatentDiffusionDecoder):
    """Latent diffusion to normalised log-mel spectrograms, then Griffin-Lim to waveforms."""

    kind = "latent_audio"
    modality = "audio"

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, scheduler: Any, *, cond_dim: int, **extra: Any):
        super().__init__(vae, unet, scheduler, cond_dim=cond_dim, **extra)
        self.logmel = LogMel(
            sample_rate=extra["sample_rate"],
            n_fft=extra["n_fft"],
            hop_length=extra["hop_length"],
            n_mels=extra["n_mels"],
            frames=extra["frames"],
            f_max=extra.get("f_max"),
        )

    def mel_input(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to the decoder's space: normalised log-mel ``(batch, 1, n_mels, frames)``."""
        return (self.logmel(wave) - LOG_MEL_MEAN) / LOG_MEL_STD

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: AudioConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Audio]:
        log_mel = outputs.float() * LOG_MEL_STD + LOG_MEL_MEAN
        iterations = int(self.extra.get("griffin_lim_iters", 60))
        waves = griffin_lim(log_mel, self.logmel, iterations=iterations, generator=generator).cpu().numpy()
        return waves_to_clips(waves, int(self.extra["sample_rate"]), settings, provenance)


class VideoDecoder(LatentDiffusionDecoder):
    """Latent video diffusion, Zeroscope's design at small scale: a ``UNet3DConditionModel`` over per-frame
    latents of an image ``AutoencoderKL``, to MP4 clips.

    The conditioning feature is read as ``cond_dim // cross_attention_dim`` cross-attention tokens (for
    codi2-mini: the clip's start and end, as its video encoder writes them), and once more per frame: the
    tokens interpolated over the frames, each frame's vector laid out as extra input channels of its latent (a
    UNet3D's cross-attention sees the same tokens at every frame, so without them it cannot tell which end of
    the clip a token describes). ``extra`` holds ``frames`` and ``fps``.
    """

    kind = "latent_video"
    modality = "video"
    unet_class = UNet3DConditionModel

    @property
    def frames(self) -> int:
        return int(self.extra["frames"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        size = int(self.unet.config.sample_size)
        return (int(self.unet.config.out_channels), self.frames, size, size)

    def _unet(self, latents: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        tokens = cond.unflatten(-1, (-1, int(self.unet.config.cross_attention_dim)))  # (batch, spans, width)
        batch, _, frames, height, width = latents.shape
        per_frame = nn.functional.interpolate(tokens.transpose(1, 2), size=frames, mode="linear", align_corners=True)
        maps = per_frame.transpose(1, 2).reshape(batch, frames, -1, height, width).transpose(1, 2)
        return self.unet(torch.cat([latents, maps.to(latents.dtype)], dim=1), t, encoder_hidden_states=tokens).sample

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(batch, frames, 3, H, W)`` in [-1, 1] to scaled latents ``(batch, channels, frames, h, w)``."""
        latents = super().encode_latents(x.flatten(0, 1))
        return latents.unflatten(0, x.shape[:2]).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(batch, channels, frames, h, w)`` to frames ``(batch, frames, 3, H, W)`` in [-1, 1]."""
        frames = latents.transpose(1, 2)
        return super().decode_latents(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: VideoConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Video]:
        return frames_to_videos(outputs, settings=settings, fps=float(self.extra["fps"]), provenance=provenance)
