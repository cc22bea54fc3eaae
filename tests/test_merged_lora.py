"""Serving with the LoRA folded into the LLM's weights: the same answers as the adapter computes beside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codi2_sdk import Conversation, Image
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.world import Picture, render_picture
from codi2_sdk.model import CoDi2Model
from codi2_sdk.testing import answer_differences

TURNS = [
    ("what is this?", "text"),
    ("move it one step right.", "image"),  # the skill only the LoRA taught
    ("draw a large red circle on the left.", "image"),
]


@pytest.fixture(scope="module")
def backends() -> tuple[LocalBackend, LocalBackend]:
    return LocalBackend.from_pretrained(), LocalBackend.from_pretrained(merge_lora=True)


def test_the_merged_model_answers_as_the_adapter_does(backends) -> None:
    adapter, merged = backends
    assert adapter.model.has_lora and not merged.model.has_lora and merged.model.config.lora is None
    picture = Image.from_pil(render_picture(Picture("square", "green", "small", "left"), np.random.default_rng(0)))
    for words, modality in TURNS:
        config = {"seed": 3, "output_modality": modality}
        a = Conversation(backend=adapter, config=config).send(picture, words)
        b = Conversation(backend=merged, config=config).send(picture, words)
        assert answer_differences(a, b) == [], words


def test_merging_changes_the_llm_by_float_rounding_only(backends) -> None:
    adapter, merged = backends
    ids = torch.tensor([adapter.model.tokenizer("draw a large red circle on the left.")["input_ids"]])
    with torch.no_grad():
        a = adapter.model.llm(input_ids=ids).logits
        b = merged.model.llm(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_a_merged_model_saves_without_an_adapter_and_loads_back(tmp_path) -> None:
    model = CoDi2Model.from_pretrained("codi2-mini")
    model.merge_lora()
    model.merge_lora()  # nothing left to merge: a no-op
    model.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter").exists()
    again = CoDi2Model.from_pretrained(tmp_path / "merged")
    assert not again.has_lora
    for name, tensor in model.llm.state_dict().items():
        assert torch.equal(tensor, again.llm.state_dict()[name]), name
