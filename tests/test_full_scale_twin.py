"""The full-scale architecture at tiny sizes, end to end through the public API: a conversation that writes
an image, an audio clip and a video with the paper's decoder classes, the same after save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codi2_sdk import Audio, Conversation, Image, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.testing.twins import full_scale_twin

WRITES = {"image": Image, "audio": Audio, "video": Video}


@pytest.fixture(scope="module")
def twin():
    return full_scale_twin(seed=0)


def answers(backend) -> dict[str, list[str]]:
    out = {}
    for modality in WRITES:
        config = {"seed": 1, "output_modality": modality, "text": {"max_new_tokens": 3}}
        answer = Conversation(backend=backend).send("show a red circle.", config=config)
        out[modality] = [p.sha256 if p.type != "text" else p.text for p in answer.parts]  # type: ignore[union-attr]
        assert isinstance(answer.parts[0], WRITES[modality]), (modality, answer.parts)
    return out


def test_the_twin_writes_every_medium_and_reloads_to_the_same_bytes(twin, tmp_path: Path) -> None:
    backend = LocalBackend(twin)
    caps = backend.capabilities
    assert caps.input_modalities == ["text", "audio", "image", "video"]
    assert caps.output_modalities == ["text", "audio", "image", "video"]
    kinds = {m: type(d).__name__ for m, d in twin.decoders.items()}
    assert kinds == {"image": "UnCLIPImageDecoder", "audio": "AudioLDM2Decoder", "video": "ZeroscopeVideoDecoder"}
    folder = twin.save_pretrained(tmp_path / "twin")
    first = answers(LocalBackend.from_pretrained(folder))
    assert answers(LocalBackend.from_pretrained(folder)) == first  # a fixed seed gives the same bytes


def test_the_twin_reads_every_medium(twin) -> None:
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[:, 8:24, 8:24] = 200
    media = [
        Image.from_pil(__import__("PIL.Image").Image.fromarray(frames[0])),
        Audio.from_array(0.3 * np.sin(np.arange(24_000) / 5), sample_rate=16_000),
        Video.from_frames(frames, fps=4),
    ]
    answer = Conversation(backend=LocalBackend(twin)).send(
        *media, "what is this?", config={"seed": 0, "text": {"max_new_tokens": 4}}
    )
    assert answer.role == "assistant"


@pytest.mark.parametrize("modality", sorted(WRITES))
def test_the_twin_keeps_the_best_of_several_samples(twin, modality: str) -> None:
    """Best-of-n with the paper's decoders: the samples go through the pipeline as one batch, ImageBind reads
    them back, and the one nearest the LLM's feature is the answer."""
    config = {"seed": 1, "output_modality": modality, "text": {"max_new_tokens": 3}, modality: {"candidates": 2}}
    answer = Conversation(backend=LocalBackend(twin)).send("show a red circle.", config=config)
    part = answer.parts[0]
    assert isinstance(part, WRITES[modality]) and part.provenance.candidates == 2
