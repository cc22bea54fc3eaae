"""The paper's metrics (codi2_sdk.metrics): the plumbing on tiny random DINO/CLIP/CLAP models built with the real
classes and saved as local folders, and the numbers' meaning on exact signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from codi2_sdk import Audio, Image
from codi2_sdk.metrics import (
    AudioEditMetrics,
    ClipScorer,
    ImageEmbedder,
    SubjectMetrics,
    frechet_distance,
    load_dreambench,
    log_spectral_distance,
    paired_kl,
    subject_similarity,
)
from codi2_sdk.testing import fake_audio


def picture(colour: str, size: int = 48) -> Image:
    return Image.from_pil(PIL.Image.new("RGB", (size, size), colour))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    from codi2_sdk.testing.twins import _tiny_clip_text

    root = tmp_path_factory.mktemp("metrics")
    torch.manual_seed(0)
    Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(root / "dino")
    tokenizer, _ = _tiny_clip_text(width=32, max_length=16)
    clip = CLIPModel(
        CLIPConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 16,
                "bos_token_id": 0,
                "eos_token_id": 1,
                "pad_token_id": 1,
            },
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "image_size": 32,
                "patch_size": 8,
            },
            projection_dim=16,
        )
    )
    clip.save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    return {"dino": root / "dino", "clip": root / "clip"}


def test_subject_metrics_load_local_folders_and_score_in_range(folders) -> None:
    metrics = SubjectMetrics.from_pretrained(**folders)
    refs = [[picture("red"), picture("red", 64)], [picture("blue")]]
    scores = metrics.score([picture("red"), picture("blue")], refs, ["a red square", "a blue square"])
    assert set(scores) == {"dino", "clip_i", "clip_t"} and all(-1.0 <= v <= 1.0 for v in scores.values())
    # a picture is most like itself: identical pictures score 1 on both subject metrics
    same = metrics.score([picture("green")], [[picture("green")]], ["a green square"])
    assert same["dino"] == pytest.approx(1.0, abs=1e-5) and same["clip_i"] == pytest.approx(1.0, abs=1e-5)


def test_embedders_crop_rather_than_stretch(folders) -> None:
    dino = ImageEmbedder.from_pretrained(folders["dino"])
    wide = PIL.Image.new("RGB", (96, 32), "white")
    wide.paste(PIL.Image.new("RGB", (40, 32), "red"), (28, 0))
    assert np.allclose(dino.embed([wide]), dino.embed([PIL.Image.new("RGB", (32, 32), "red")]), atol=1e-4)
    clip = ClipScorer.from_pretrained(folders["clip"])
    assert clip.embed_text(["a red square", "rain"]).shape == (2, 16)


def test_log_spectral_distance_is_zero_for_the_same_clip_and_grows_with_the_difference() -> None:
    a440, a466, a880 = fake_audio(frequency=440.0), fake_audio(frequency=466.0), fake_audio(frequency=880.0)
    assert log_spectral_distance(a440, a440) == pytest.approx(0.0, abs=1e-6)
    assert 0 < log_spectral_distance(a440, a466) <= log_spectral_distance(a440, a880) * 1.5
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 16_000)
    loud, quiet = Audio.from_array(noise, sample_rate=16_000), Audio.from_array(0.1 * noise, sample_rate=16_000)
    assert log_spectral_distance(loud, quiet) == pytest.approx(2.0, abs=0.05)  # 20 dB quieter: log10 ratio of 2


def test_frechet_distance_and_kl_on_known_distributions() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(1.0, abs=1e-6)  # a pure mean shift of 1
    wider = rng.normal(size=(4000, 3)) * 2
    assert frechet_distance(a, wider) == pytest.approx(3.0, abs=0.3)  # 3 x (1 + 4 - 2*2)
    assert paired_kl(a[:10], a[:10]) == pytest.approx(0.0, abs=1e-12) and paired_kl(a[:10], a[10:20]) > 0


def test_audio_edit_metrics_over_any_embedding() -> None:
    def embed(clips: list[Audio]) -> np.ndarray:  # a spectrum summary stands in for an audio tower
        return np.stack([np.abs(np.fft.rfft(c.to_numpy()[:4096]))[:64] for c in clips])

    targets = [fake_audio(frequency=f) for f in (300.0, 400.0, 500.0)]
    exact = AudioEditMetrics(embed).score(targets, targets)
    off = AudioEditMetrics(embed).score([fake_audio(frequency=f) for f in (330.0, 800.0, 200.0)], targets)
    assert exact["lsd"] == pytest.approx(0.0, abs=1e-6) and exact["fd"] == pytest.approx(0.0, abs=1e-3)
    assert off["lsd"] > 0.5 and off["kl"] > exact["kl"] and off["fd"] > 0
    with pytest.raises(ValueError, match="one target per generated clip"):
        AudioEditMetrics(embed).score(targets[:2], targets)


def test_subject_similarity_over_any_embedding_and_on_the_mini_world() -> None:
    def embed(pictures: list[Image]) -> np.ndarray:  # mean colour, as unit vectors
        means = np.stack([np.asarray(p.to_pil(), dtype=np.float64).mean(axis=(0, 1)) for p in pictures])
        return means / np.linalg.norm(means, axis=1, keepdims=True)

    red, blue = picture("red"), picture("blue")
    assert subject_similarity(embed, [red], [[red, red]]) == pytest.approx(1.0)
    assert subject_similarity(embed, [blue], [[red]]) == pytest.approx(0.0, abs=1e-9)
    assert subject_similarity(embed, [red, blue], [[red], [red, blue]]) == pytest.approx(0.75)

    # codi2-mini's encoder sees a subject's mark: another render of the same subject is nearer than the same
    # object with another mark, under both the DINO-style and the CLIP-I-style embedding
    from functools import partial

    from codi2_sdk import samples
    from codi2_sdk.mini.evaluate import mini_image_features

    references = [samples.picture("a small blue diamond on the left", mark="checker", seed=s) for s in (1, 2)]
    same = samples.picture("a large blue diamond on the right", mark="checker", seed=3)
    other = samples.picture("a large blue diamond on the right", mark="hstripes", seed=3)
    for kind in ("texture", "pooled"):
        mini = partial(mini_image_features, kind=kind)
        assert subject_similarity(mini, [same], [references]) > subject_similarity(mini, [other], [references])


def test_dreambench_folder_layout(tmp_path: Path) -> None:
    (tmp_path / "dog").mkdir()
    PIL.Image.new("RGB", (8, 8), "brown").save(tmp_path / "dog" / "00.jpg")
    (tmp_path / "dog" / "prompts.txt").write_text("a {} on the beach\n\na {} in the snow\n")
    (tmp_path / "notes").mkdir()  # folders without pictures and prompts are skipped
    [dog] = load_dreambench(tmp_path)
    assert dog.name == "dog" and len(dog.references) == 1 and dog.prompts == ["a {} on the beach", "a {} in the snow"]
    with pytest.raises(FileNotFoundError):
        load_dreambench(tmp_path / "notes")
