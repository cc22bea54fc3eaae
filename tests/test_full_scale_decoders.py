"""The paper's audio and video decoders (AudioLDM2, Zeroscope) over tiny random twins of their pipelines:
a feature in, a finished part out, step by step, reproducible, saved and loaded, cancellable."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from codi2_sdk import Audio, AudioConfig, Provenance, Video, VideoConfig
from codi2_sdk.model.parts import load_kind
from codi2_sdk.testing.twins import tiny_audioldm2_decoder, tiny_zeroscope_decoder

CASES = {
    "audioldm2": (tiny_audioldm2_decoder, AudioConfig(steps=3, guidance_scale=2.0), Audio),
    "zeroscope_video": (tiny_zeroscope_decoder, VideoConfig(steps=3, guidance_scale=2.0, fps=4.0), Video),
}


def decode(decoder, settings, seed: int = 0):
    feature = torch.randn(1, decoder.cond_dim, generator=torch.Generator().manual_seed(7))
    run = decoder.iter_decode(
        feature, settings, generator=torch.Generator().manual_seed(seed), provenance=Provenance(model="twin", seed=seed)
    )
    steps = []
    while True:
        try:
            steps.append(next(run))
        except StopIteration as done:
            return steps, done.value


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_feature_becomes_a_part_step_by_step(kind: str, tmp_path: Path) -> None:
    build, settings, part_type = CASES[kind]
    decoder = build()
    steps, parts = decode(decoder, settings)
    assert steps == [1, 2, 3] and len(parts) == 1 and isinstance(parts[0], part_type)
    part = parts[0]
    assert part.provenance == Provenance(model="twin", seed=0, steps=3, guidance_scale=2.0)
    if isinstance(part, Video):
        assert (part.frames, part.width, part.height, part.fps) == (4, 24, 16, 4.0)  # wider than high, as Zeroscope's
    else:
        assert part.sample_rate == 16000 and part.duration > 0
    assert decode(decoder, settings)[1][0].data == part.data  # same seed, same bytes
    decoder.save_pretrained(tmp_path / kind)
    loaded = load_kind("decoder", kind, tmp_path / kind)
    assert decode(loaded, settings)[1][0].data == part.data


def test_video_settings_choose_frames_and_size() -> None:
    decoder = tiny_zeroscope_decoder()
    _, (clip,) = decode(decoder, VideoConfig(steps=1, guidance_scale=1.0, num_frames=2, size=24, fps=2.0))
    assert (clip.frames, clip.width, clip.height, clip.fps) == (2, 24, 24, 2.0)
    _, (wide,) = decode(decoder, VideoConfig(steps=1, guidance_scale=1.0, num_frames=2, width=32, height=8))
    assert (wide.width, wide.height) == (32, 8)


def test_audio_duration_is_trimmed_or_padded() -> None:
    _, (clip,) = decode(tiny_audioldm2_decoder(), AudioConfig(steps=1, guidance_scale=1.0, duration=0.5))
    assert clip.duration == 0.5


@pytest.mark.parametrize("kind", sorted(CASES))
def test_closing_the_decode_stops_the_pipeline(kind: str) -> None:
    build, settings, _ = CASES[kind]
    decoder = build()
    calls: list[int] = []
    decoder.unet.register_forward_hook(lambda *_: calls.append(1))
    threads = threading.active_count()
    run = decoder.iter_decode(torch.randn(1, decoder.cond_dim), settings.model_copy(update={"steps": 50}))
    assert next(run) == 1
    made = len(calls)
    assert made >= 1 and threading.active_count() == threads  # the pipeline runs on this thread
    assert torch.is_grad_enabled()  # the pipeline's no_grad stays on its side of the switch
    run.close()  # the pipeline stops where it waits, after its first step
    assert len(calls) == made and torch.is_grad_enabled()


def test_a_decode_resumed_on_another_thread_is_a_clear_error() -> None:
    from codi2_sdk.errors import ModelError

    decoder = tiny_audioldm2_decoder()
    run = decoder.iter_decode(torch.randn(1, decoder.cond_dim), AudioConfig(steps=5, guidance_scale=1.0))
    assert next(run) == 1
    raised: list[BaseException] = []

    def elsewhere() -> None:
        try:
            next(run)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert len(raised) == 1 and isinstance(raised[0], ModelError) and "one thread" in str(raised[0])


def _tiny_stable_diffusion():
    """A pipeline class of current diffusers, one that takes ``callback_on_step_end`` (prompt embeddings given, so it
    needs no text encoder or tokenizer)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(block_out_channels=[8], latent_channels=4, norm_num_groups=8)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_a_current_pipeline_streams_through_callback_on_step_end_and_stops_when_closed() -> None:
    import inspect

    from codi2_sdk.model.fullscale.pipelines import step_callback, stream_pipeline

    pipeline = _tiny_stable_diffusion()
    assert "callback_on_step_end" in step_callback(pipeline, lambda step: None)
    assert "callback_on_step_end" not in inspect.signature(tiny_audioldm2_decoder().pipeline.__call__).parameters
    embeds, ran = torch.randn(1, 4, 8), []

    def run(callbacks):
        def counting(pipe, step, timestep, tensors):
            ran.append(step)
            return callbacks["callback_on_step_end"](pipe, step, timestep, tensors)

        images = pipeline(
            prompt_embeds=embeds,
            negative_prompt_embeds=embeds,
            num_inference_steps=steps,
            height=16,
            width=16,
            output_type="pt",
            callback_on_step_end=counting,
        ).images
        return images

    steps = 3
    stream = stream_pipeline(pipeline, run, "sd-decode")
    assert list(_steps_and_value(stream)[0]) == [1, 2, 3] and ran == [0, 1, 2]
    steps, ran = 50, []
    stream = stream_pipeline(pipeline, run, "sd-decode")
    assert next(stream) == 1
    stream.close()  # the callback raises at the next step: the other 48 never run
    assert len(ran) <= 3, ran


def _steps_and_value(stream):
    steps = []
    while True:
        try:
            steps.append(next(stream))
        except StopIteration as done:
            return steps, done.value


@pytest.mark.parametrize("kind", sorted(CASES))
def test_dpm_solver_is_one_setting_away_and_is_recorded(kind: str) -> None:
    build, settings, part_type = CASES[kind]
    decoder = build()
    own = decoder.pipeline.scheduler
    _, (default,) = decode(decoder, settings)
    fast_steps, (fast,) = decode(decoder, settings.model_copy(update={"scheduler": "dpm_solver", "steps": 2}))
    assert fast_steps == [1, 2] and isinstance(fast, part_type) and fast.provenance.scheduler == "dpm_solver"
    assert fast.data != default.data and default.provenance.scheduler is None
    assert decoder.pipeline.scheduler is own  # put back after the decode


def test_audioldm2s_language_of_audio_is_the_pipelines_through_transformers_cache() -> None:
    """The GPT-2 states AudioLDM2 conditions on are computed as diffusers computes them, without the
    ``past_key_values`` keyword transformers 5 deprecates (and says 5.40 removes): no warning, the same states."""
    import warnings

    from diffusers import AudioLDM2Pipeline

    from codi2_sdk.model.fullscale.audioldm2 import AudioLDM2Decoder, generate_language_model
    from codi2_sdk.testing.twins import tiny_audioldm2_pipeline

    pipeline = tiny_audioldm2_pipeline()
    pipeline.language_model.eval()  # as a published pipeline loads
    torch.manual_seed(0)
    states = torch.randn(2, 5, pipeline.language_model.config.n_embd)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers' own, the reference, warns at each step
        for mask in (None, torch.tensor([[1, 1, 1, 0, 1], [0, 1, 1, 1, 1]])):
            theirs = AudioLDM2Pipeline.generate_language_model(pipeline, states, attention_mask=mask, max_new_tokens=4)
            ours = generate_language_model(pipeline.language_model, states, attention_mask=mask, max_new_tokens=4)
            assert ours.shape == (2, 4, states.shape[-1]) and torch.allclose(ours, theirs, atol=1e-5)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values", category=FutureWarning)
        decoder = AudioLDM2Decoder(pipeline, cond_dim=16)  # encodes the empty prompt
        with torch.no_grad():
            encoded = decoder._caption_conditioning(["a dog barks", "rain"])  # the decoder stage's targets
    assert encoded["generated_prompt_embeds"][0].shape[:2] == (2, 8)
