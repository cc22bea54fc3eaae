"""ImageBind's audio tower in plain torch: the Kaldi filterbank against an independent computation, and the
official checkpoint's key names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from codi2_sdk import Audio, ModelError, ModelNotFoundError
from codi2_sdk.model import ImageBindAudioEncoder, load_imagebind_audio
from codi2_sdk.model.imagebind.audio import kaldi_fbank, official_key
from codi2_sdk.model.parts import build_kind

TINY = {"embed_dim": 32, "num_blocks": 2, "num_heads": 4, "out_dim": 24, "num_mel_bins": 32, "target_length": 48}


def reference_fbank(wave: np.ndarray, rate: int = 16_000, bins: int = 128) -> np.ndarray:
    """Kaldi's fbank written out plainly in float64 numpy, frame by frame and filter by filter."""
    size, shift, padded = int(rate * 0.025), int(rate * 0.010), 512
    n = np.arange(size)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / (size - 1))

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(rate / 2)
    step = (high - low) / (bins + 1)
    filters = np.zeros((bins, padded // 2 + 1))
    for b in range(bins):
        left, center, right = low + b * step, low + (b + 1) * step, low + (b + 2) * step
        for k in range(padded // 2):
            m = mel(k * rate / padded)
            if left < m < right:
                filters[b, k] = (m - left) / (center - left) if m <= center else (right - m) / (right - center)
    rows = []
    for start in range(0, len(wave) - size + 1, shift):
        frame = wave[start : start + size].astype(np.float64)
        frame = frame - frame.mean()
        frame = frame - 0.97 * np.concatenate([[frame[0]], frame[:-1]])
        spectrum = np.abs(np.fft.rfft(np.pad(frame * window, (0, padded - size)))) ** 2
        rows.append(np.log(np.maximum(filters @ spectrum, np.finfo(np.float32).eps)))
    return np.array(rows)


def test_the_fbank_port_matches_an_independent_computation() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16_000)) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t) + 0.05 * rng.standard_normal(len(t))
    theirs = reference_fbank(wave)
    ours = kaldi_fbank(torch.from_numpy(wave)).numpy()  # float64 in, float64 arithmetic
    assert ours.shape == theirs.shape == (1 + (len(t) - 400) // 160, 128)
    assert np.abs(ours - theirs).max() < 1e-4
    # in float32, as the official pipeline runs it, only rounding separates them
    assert np.abs(kaldi_fbank(torch.from_numpy(wave).float()).double().numpy() - theirs).max() < 1e-3


def tiny_tower(seed: int = 0) -> ImageBindAudioEncoder:
    torch.manual_seed(seed)
    return ImageBindAudioEncoder(**TINY).eval()


def test_the_tower_loads_a_checkpoint_with_the_official_key_names(tmp_path: Path) -> None:
    tower = tiny_tower()
    official = {official_key(k): v for k, v in tower.state_dict().items()}
    assert "modality_trunks.audio.blocks.1.attn.bias_k" in official
    assert "modality_preprocessors.audio.rgbt_stem.proj.weight" in official
    assert "modality_heads.audio.2.weight" in official
    official["modality_trunks.vision.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)  # other towers: ignored
    torch.save(official, tmp_path / "imagebind_huge.pth")
    loaded = load_imagebind_audio(tmp_path / "imagebind_huge.pth", **TINY)
    mels = torch.randn(2, 3, 1, TINY["num_mel_bins"], TINY["target_length"])
    with torch.no_grad():
        assert torch.equal(loaded(mels), tower(mels))
    del official["modality_heads.audio.0.weight"]
    torch.save(official, tmp_path / "partial.pth")
    with pytest.raises(ModelError, match=r"modality_heads\.audio\.0\.weight"):
        load_imagebind_audio(tmp_path / "partial.pth", **TINY)
    with pytest.raises(ModelNotFoundError):
        load_imagebind_audio(tmp_path / "missing.pth")
    with torch.no_grad():  # the folder ImageBind's own code saves the file in stands for it
        assert torch.equal(load_imagebind_audio(tmp_path, **TINY)(mels), tower(mels))


def test_a_bad_checkpoint_file_is_a_model_error_and_runs_no_code(tmp_path: Path) -> None:
    """A corrupt, truncated or hostile file is named as no ImageBind checkpoint, with the reader's own reason, and
    never unpickled as code (torch's message alone would advise ``weights_only=False``, which runs it)."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "ran"),))

    torch.save({"modality_heads.audio.0.weight": Payload()}, tmp_path / "hostile.pth")
    torch.save({"a": torch.zeros(3)}, tmp_path / "whole.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:300])
    (tmp_path / "noise.pth").write_bytes(bytes(range(256)) * 4)
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    for name, reason in (
        ("hostile", r"unsupported GLOBAL \w+\.mkdir"),
        ("truncated", "failed reading zip archive"),
        ("noise", "Unsupported operand"),
        ("list", "holds a list, not an ImageBind state dict"),
    ):
        with pytest.raises(ModelError, match=reason) as bad:
            load_imagebind_audio(tmp_path / f"{name}.pth", **TINY)
        assert "weights_only" not in str(bad.value)
    assert not (tmp_path / "ran").exists()


def test_clips_features_and_the_registry(tmp_path: Path) -> None:
    tower = build_kind("encoder", "imagebind_audio", TINY).eval()
    t = np.arange(5 * 22_050) / 22_050
    long = Audio.from_array(0.4 * np.sin(2 * np.pi * 330 * t), sample_rate=22_050)  # resampled to 16 kHz
    short = Audio.from_array(0.4 * np.sin(2 * np.pi * 330 * t[:8000]), sample_rate=22_050)
    assert tower.clip_spans(5 * 16_000) == [(0, 32_000), (24_000, 56_000), (48_000, 80_000)]
    mels = tower.preprocess([long, short])
    assert mels.shape == (2, 3, 1, TINY["num_mel_bins"], TINY["target_length"])
    assert torch.equal(mels[1, 0], mels[1, 2])  # a clip under 2 s: the three clips are the whole of it
    with torch.no_grad():
        features = tower(mels)
    assert features.shape == (2, 1, 24) and tower.tokens_per_item == 1 and tower.width == 24
    assert torch.allclose(tower.embed_clips(mels[0]).norm(dim=-1), torch.full((3,), 20.0), atol=1e-4)
    tower.save_pretrained(tmp_path / "tower")
    again = ImageBindAudioEncoder.from_pretrained(tmp_path / "tower").eval()
    with torch.no_grad():
        assert torch.equal(again(mels), features)
