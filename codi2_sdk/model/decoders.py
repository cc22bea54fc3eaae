"""Diffusion decoders: conditioning features in, images or audio out.

:class:`LatentDiffusionDecoder` is latent diffusion built from diffusers parts: an ``AutoencoderKL``, a
``UNet2DConditionModel`` conditioned on the feature vector twice (``class_embed_type="projection"`` and
one cross-attention token), and a diffusers scheduler (DDIM by default), with classifier-free guidance
against the zero vector (the decoder is trained with condition dropout to zeros).
:class:`ImageDecoder` turns its output into pictures; :class:`AudioDecoder` runs it over normalised
log-mel spectrograms and inverts them with Griffin-Lim.

A decoder folder has the diffusers layout: ``vae/``, ``unet/``, ``scheduler/``, plus ``decoder.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from torch import nn

from ..content import Audio, Image
from .audio_features import LogMel, griffin_lim
from .encoders import LOG_MEL_MEAN, LOG_MEL_STD

__all__ = [
    "AudioDecoder",
    "DiffusionDecoder",
    "ImageDecoder",
    "LatentDiffusionDecoder",
    "StepCallback",
    "UnCLIPImageDecoder",
    "build_decoder",
    "load_decoder",
]

StepCallback = Callable[[int, int], None]
"""Called after each diffusion step with ``(step, total)``; raising from it cancels the decode."""

_SCHEDULERS: dict[str, Any] = {
    "DDIMScheduler": DDIMScheduler,
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
}


class DiffusionDecoder(nn.Module):
    """What the model needs of a decoder: a conditioning width, stepwise sampling, and media out."""

    kind: ClassVar[str] = ""
    cond_dim: int

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

    def to_media(self, outputs: torch.Tensor, *, generator: torch.Generator | None = None) -> list[Any]:
        """Turn :meth:`iter_sample`'s outputs into SDK parts."""
        raise NotImplementedError


def pixels_to_images(outputs: torch.Tensor) -> list[Image]:
    """Pixels in [-1, 1], ``(batch, 3, height, width)``, as PNG :class:`Image` parts."""
    pixels = ((outputs.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.from_pil(PIL.Image.fromarray(np.ascontiguousarray(p))) for p in pixels]


class LatentDiffusionDecoder(DiffusionDecoder):
    """Latent diffusion conditioned on one feature vector per sample."""

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, scheduler: Any, *, cond_dim: int, **extra: Any):
        super().__init__()
        self.vae, self.unet, self.scheduler = vae, unet, scheduler
        self.cond_dim = cond_dim
        self.extra = extra

    # -- building and files ----------------------------------------------------------------------

    @classmethod
    def build(
        cls, *, cond_dim: int, vae: dict[str, Any], unet: dict[str, Any], scheduler: dict[str, Any], **extra: Any
    ):
        """A random-initialised decoder from the parts' diffusers configs."""
        scheduler_cls = _SCHEDULERS[scheduler.pop("class_name", "DDIMScheduler")]
        return cls(
            AutoencoderKL(**vae), UNet2DConditionModel(**unet), scheduler_cls(**scheduler), cond_dim=cond_dim, **extra
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``vae/``, ``unet/``, ``scheduler/`` and ``decoder.json``."""
        directory = Path(directory)
        self.vae.save_pretrained(directory / "vae")
        self.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        (directory / "decoder.json").write_text(
            json.dumps({"kind": self.kind, "cond_dim": self.cond_dim, **self.extra})
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path):
        """Load a decoder written by :meth:`save_pretrained`."""
        directory = Path(directory)
        meta = json.loads((directory / "decoder.json").read_text())
        meta.pop("kind")
        scheduler_cfg = json.loads((directory / "scheduler" / "scheduler_config.json").read_text())
        scheduler_cls = _SCHEDULERS[scheduler_cfg["_class_name"]]
        return cls(
            AutoencoderKL.from_pretrained(directory / "vae"),
            UNet2DConditionModel.from_pretrained(directory / "unet"),
            scheduler_cls.from_pretrained(directory / "scheduler"),
            **meta,
        )

    # -- diffusion -------------------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, int, int]:
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
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)``, yielding the step number after each step.

        Returns (as the generator's value) decoder-space outputs: pixels in [-1, 1], or normalised log-mel.
        Closing the generator between steps cancels the decode.
        """
        cond = cond.to(self.unet.dtype)
        # noise is drawn on the generator's device (CPU by default) so a seed gives the same bytes anywhere
        noise_device = generator.device if generator is not None else cond.device
        latents = torch.randn((len(cond), *self.latent_shape), generator=generator, device=noise_device)
        latents = latents.to(device=cond.device, dtype=cond.dtype)
        # a fresh copy: the scheduler keeps per-run state, and one decoder may serve several runs
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=cond.device)
        latents = latents * scheduler.init_noise_sigma
        guided = guidance_scale != 1.0
        both = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        for i, t in enumerate(scheduler.timesteps):
            model_in = scheduler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
            out = self._unet(model_in, t, both)
            if guided:
                uncond, conditioned = out.chunk(2)
                out = uncond + guidance_scale * (conditioned - uncond)
            latents = scheduler.step(out, t, latents, generator=generator).prev_sample
            yield i + 1
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


class ImageDecoder(LatentDiffusionDecoder):
    """Latent diffusion to RGB pictures."""

    kind = "latent_image"

    def to_media(self, outputs: torch.Tensor, *, generator: torch.Generator | None = None) -> list[Image]:
        return pixels_to_images(outputs)


class AudioDecoder(LatentDiffusionDecoder):
    """Latent diffusion to normalised log-mel spectrograms, then Griffin-Lim to waveforms."""

    kind = "latent_audio"

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

    def to_media(self, outputs: torch.Tensor, *, generator: torch.Generator | None = None) -> list[Audio]:
        log_mel = outputs.float() * LOG_MEL_STD + LOG_MEL_MEAN
        iterations = int(self.extra.get("griffin_lim_iters", 60))
        waves = griffin_lim(log_mel, self.logmel, iterations=iterations, generator=generator).cpu().numpy()
        rate = int(self.extra["sample_rate"])
        return [Audio.from_array(np.clip(w, -1.0, 1.0), sample_rate=rate) for w in waves]


class UnCLIPImageDecoder(DiffusionDecoder):
    """Stable Diffusion 2.1 unCLIP (diffusers ``StableUnCLIPImg2ImgPipeline``) as the image decoder, the
    paper's choice: the predicted feature is given as ``image_embeds`` directly, with an empty prompt.

    The folder is the pipeline's own diffusers layout (``model_index.json``, ``unet/``, ``vae/``, ...); an
    empty-prompt embedding is computed with its text encoder, or read from ``prompt_embeds.safetensors``
    when the pipeline is saved without one. The pipeline runs in a worker thread so that progress
    events stream out step by step; closing the iterator stops it at the next step.
    """

    kind: ClassVar[str] = "unclip_image"
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

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        self.pipeline.save_pretrained(str(directory))
        save_file({"prompt_embeds": self.prompt_embeds.contiguous().cpu()}, str(Path(directory) / self.PROMPT_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> UnCLIPImageDecoder:
        from diffusers import StableUnCLIPImg2ImgPipeline
        from safetensors.torch import load_file

        index = json.loads((Path(directory) / "model_index.json").read_text())
        absent = {name: None for name, spec in index.items() if isinstance(spec, list) and spec[0] is None}
        pipeline = StableUnCLIPImg2ImgPipeline.from_pretrained(str(directory), local_files_only=True, **absent)
        pipeline.set_progress_bar_config(disable=True)
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
        import queue
        import threading

        updates: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def on_step(step: int, timestep: Any, latents: Any) -> None:
            if stop.is_set():
                raise _Cancelled
            updates.put(("step", step + 1))

        def run() -> None:
            embeds = self.prompt_embeds.to(cond.device).expand(len(cond), -1, -1)
            try:
                out = self.pipeline(
                    prompt_embeds=embeds,
                    negative_prompt_embeds=torch.zeros_like(embeds),
                    image_embeds=cond,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    noise_level=int(noise_level or 0),
                    generator=generator,
                    output_type="pt",
                    callback=on_step,
                    callback_steps=1,
                )
                updates.put(("done", out.images * 2 - 1))
            except _Cancelled:
                updates.put(("cancelled", None))
            except BaseException as exc:
                updates.put(("error", exc))

        worker = threading.Thread(target=run, name="unclip-decode", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = updates.get()
                if kind == "step":
                    yield int(value)
                elif kind == "done":
                    return value
                elif kind == "error":
                    raise value
                else:
                    raise RuntimeError("the decode was cancelled")
        finally:
            stop.set()
            worker.join()

    def to_media(self, outputs: torch.Tensor, *, generator: torch.Generator | None = None) -> list[Image]:
        return pixels_to_images(outputs)


class _Cancelled(Exception):
    pass


_KINDS: dict[str, Any] = {
    "latent_image": ImageDecoder,
    "latent_audio": AudioDecoder,
    "unclip_image": UnCLIPImageDecoder,
}


def build_decoder(kind: str, args: dict[str, Any]) -> LatentDiffusionDecoder:
    """A random-initialised decoder of ``kind`` (latent decoders; unCLIP pipelines load from a folder)."""
    if kind == UnCLIPImageDecoder.kind:
        raise ValueError("an unclip_image decoder is loaded from a diffusers folder, not built from arguments")
    return _KINDS[kind].build(**json.loads(json.dumps(args)))


def load_decoder(kind: str, directory: Path) -> Any:
    """Load a decoder of ``kind`` from ``directory``."""
    return _KINDS[kind].from_pretrained(directory)
