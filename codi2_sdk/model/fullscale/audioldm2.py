"""AudioLDM2 as the audio decoder, the paper's choice (diffusers ``AudioLDM2Pipeline``).

AudioLDM2 is conditioned on two sequences, not one vector: GPT-2's "language of audio" states
(``generated_prompt_embeds``, 8 x 768) and T5's text states (``prompt_embeds``, L x 1024). Two output
projectors (:class:`~codi2_sdk.model.fullscale.pipelines.QueryProjector`) map the model's 1024-d feature into each;
the unconditional side of guidance is the encoded empty prompt (as the pipeline runs by default), computed once
and stored with the decoder. The pipeline runs step by step on the caller's thread (a greenlet), so progress
streams as it goes; closing the iterator stops it after the step it is at. Pitfalls measured with
diffusers 0.42: ``text_encoder_2`` (T5) must be present even when embeddings are given; negatives need both
streams, shaped like the prompts; steps are reported through the old ``callback`` / ``callback_steps`` API; its
GPT-2 loop passes ``past_key_values``, deprecated in transformers 5 (removed in 5.40, it says), so the decoder
installs :func:`generate_language_model`, the same computation through ``cache``, on the pipeline.

The weights are CC-BY-NC-SA (the user supplies the pipeline folder).
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import torch

from ...config import AudioConfig
from ...content import Audio, Provenance
from ..media_io import LogMel, audio_to_tensor, waves_to_clips
from .pipelines import PipelineDecoder, QueryProjector, fit_tokens

__all__ = ["AudioLDM2Decoder"]


def generate_language_model(
    language_model: Any,
    inputs_embeds: torch.Tensor,
    max_new_tokens: int | None = 8,
    attention_mask: Any = None,
    **unused: Any,
) -> torch.Tensor:
    """AudioLDM2's "language of audio": GPT-2 continued ``max_new_tokens`` steps on its own last hidden state, as
    diffusers' ``AudioLDM2Pipeline.generate_language_model`` computes it, but through transformers' ``cache``.
    diffusers 0.42 passes GPT-2 ``past_key_values``, which transformers 5 deprecates (a warning at every step) and
    says it removes in 5.40; it also never gets a cache back (transformers 5 returns it as ``cache``), so it reruns
    the whole sequence at each step. Installed on the pipeline by :class:`AudioLDM2Decoder`."""
    from transformers import DynamicCache

    max_new_tokens = max_new_tokens or language_model.config.max_new_tokens  # the pipeline passes None
    cache, step, mask, made = DynamicCache(config=language_model.config), inputs_embeds, attention_mask, []
    for _ in range(max_new_tokens):
        out = language_model(
            inputs_embeds=step, attention_mask=mask, cache=cache, use_cache=True, output_hidden_states=True
        )
        step = out.hidden_states[-1][:, -1:, :]
        made.append(step)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return torch.cat(made, dim=1)


class AudioLDM2Decoder(PipelineDecoder):
    """A feature vector to audio through AudioLDM2, via two output projectors."""

    pipeline_class = "AudioLDM2Pipeline"
    kind: ClassVar[str] = "audioldm2"
    modality = "audio"
    options = (*PipelineDecoder.options, "duration")

    to_prompt: QueryProjector
    negative_prompt_embeds: torch.Tensor
    to_generated: QueryProjector
    vocoder: Any
    negative_generated_embeds: torch.Tensor
    negative_prompt_mask: torch.Tensor

    def __init__(
        self,
        pipeline: Any,
        *,
        cond_dim: int,
        prompt_tokens: int = 8,
        generated_tokens: int = 8,
        audio_length_in_s: float = 10.24,
        projector_width: int = 256,
    ) -> None:
        super().__init__()
        pipeline.generate_language_model = functools.partial(generate_language_model, pipeline.language_model)
        self.register_components(pipeline)  # unet, vae, vocoder, CLAP, T5, GPT-2, projection: .to() moves them all
        self.cond_dim = cond_dim
        self.meta = {
            "cond_dim": cond_dim,
            "prompt_tokens": prompt_tokens,
            "generated_tokens": generated_tokens,
            "audio_length_in_s": audio_length_in_s,
            "projector_width": projector_width,
        }
        t5_dim = int(pipeline.text_encoder_2.config.d_model)
        lm_dim = int(pipeline.language_model.config.n_embd)
        self.to_prompt = QueryProjector(cond_dim, t5_dim, prompt_tokens, width=projector_width)
        self.to_generated = QueryProjector(cond_dim, lm_dim, generated_tokens, width=projector_width)
        # The unconditional side of guidance: the encoded empty prompt, as AudioLDM2 was trained and is run (its
        # pipeline encodes "" when no negative prompt is given), computed once and stored with the projectors.
        negative, mask, generated = torch.zeros(1, prompt_tokens, t5_dim), torch.zeros(1, prompt_tokens), None
        empty = self.encode_prompt(pipeline, "")
        if empty is not None:
            states, real, generated = empty
            negative, mask = (
                fit_tokens(states, prompt_tokens),
                fit_tokens(real[..., None].float(), prompt_tokens)[..., 0],
            )
        self.register_buffer("negative_prompt_embeds", negative.float())
        self.register_buffer("negative_prompt_mask", mask.float())
        generated = (
            torch.zeros(1, generated_tokens, lm_dim) if generated is None else fit_tokens(generated, generated_tokens)
        )
        self.register_buffer("negative_generated_embeds", generated.float())

    def conditioning(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prompt_embeds": self.to_prompt(features), "generated_prompt_embeds": self.to_generated(features)}

    def _caption_conditioning(self, captions: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        device = self.negative_prompt_embeds.device
        prompt, mask, generated = self.pipeline.encode_prompt(captions, device, 1, False)
        return {
            "prompt_embeds": (prompt, mask),
            "generated_prompt_embeds": (generated, torch.ones(generated.shape[:2], device=device)),
        }

    def latents(self, parts: list[Audio]) -> torch.Tensor:
        """Log-mel spectrograms (time x mel bins, the vocoder's input; 64 ms windows, 10 ms hops, AudioLDM's
        framing) through the VAE."""
        rate, bins = int(self.vocoder.config.sampling_rate), int(self.vocoder.config.model_in_dim)
        hop = rate // 100
        frames = max(8, round(float(self.meta["audio_length_in_s"]) * rate / hop) // 8 * 8)
        logmel = LogMel(sample_rate=rate, n_fft=64 * rate // 1000, hop_length=hop, n_mels=bins, frames=frames)
        device = self.negative_prompt_embeds.device
        mel = logmel.to(device)(audio_to_tensor(parts, rate, logmel.num_samples).to(device)).transpose(-1, -2)
        return self.vae.encode(mel.to(self.vae.dtype)).latent_dist.mode() * self.vae.config.scaling_factor

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=conditioning["generated_prompt_embeds"],
            encoder_hidden_states_1=conditioning["prompt_embeds"],
            return_dict=False,
        )[0]

    def iter_sample(
        self,
        cond: torch.Tensor,
        *,
        steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        scheduler: str | None = None,
        duration: float | None = None,
        **options: Any,
    ) -> Generator[int, None, torch.Tensor]:
        """Decode features ``(batch, cond_dim)``, yielding each step; returns waveforms ``(batch, samples)`` of
        ``duration`` seconds (the decoder's own length by default)."""
        with torch.no_grad():
            made = self.conditioning(cond)
        prompt, generated = made["prompt_embeds"], made["generated_prompt_embeds"]
        batch = len(cond)

        return (
            yield from self.stream_call(
                "audioldm2-decode",
                scheduler,
                lambda out: torch.from_numpy(np.asarray(out.audios, dtype=np.float32)),
                prompt_embeds=prompt,
                generated_prompt_embeds=generated,
                negative_prompt_embeds=self.negative_prompt_embeds.expand(batch, -1, -1).to(prompt),
                negative_generated_prompt_embeds=self.negative_generated_embeds.expand(batch, -1, -1).to(generated),
                negative_attention_mask=self.negative_prompt_mask.expand(batch, -1).long(),
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                audio_length_in_s=float(duration or self.meta["audio_length_in_s"]),
                generator=generator,
                output_type="np",
            )
        )

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: AudioConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Audio]:
        rate = int(self.vocoder.config.sampling_rate)
        return waves_to_clips(outputs.reshape(len(outputs), -1).numpy(), rate, settings, provenance)
