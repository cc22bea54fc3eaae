"""The paper's audio and video decoders (AudioLDM2, Zeroscope) over tiny random twins of their pipelines:
a feature in, a finished part out, step by step, reproducible, saved and loaded, cancellable."""

from __future__ import annotations

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
    run = decoder.iter_decode(torch.randn(1, decoder.cond_dim), settings.model_copy(update={"steps": 50}))
    assert next(run) == 1
    run.close()  # joins the worker: it stops at its next step instead of running the other 49
