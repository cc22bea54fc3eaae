"""The SD-2.1-unCLIP image decoder (the paper's), with a tiny pipeline built in code from the real classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codi2_sdk.model.fullscale.unclip import UnCLIPImageDecoder
from codi2_sdk.model.parts import load_kind
from codi2_sdk.testing.twins import tiny_unclip_pipeline


@pytest.fixture(scope="module")
def decoder() -> UnCLIPImageDecoder:
    return UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt_embeds=torch.randn(1, 4, 24))


def test_unclip_decodes_image_embeds_with_progress(decoder: UnCLIPImageDecoder) -> None:
    cond = torch.randn(1, decoder.cond_dim)
    run = decoder.iter_sample(cond, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    steps = []
    while True:
        try:
            steps.append(next(run))
        except StopIteration as done:
            outputs = done.value
            break
    assert steps == [1, 2, 3] and outputs.shape == (1, 3, 16, 16) and outputs.min() >= -1
    image = decoder.to_media(outputs)[0]
    assert (image.width, image.height) == (16, 16)
    again = decoder.sample(cond, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(outputs, again)


def test_unclip_decode_can_be_cancelled(decoder: UnCLIPImageDecoder) -> None:
    run = decoder.iter_sample(torch.randn(1, decoder.cond_dim), steps=50, guidance_scale=1.0)
    assert next(run) == 1
    run.close()  # stops the pipeline thread at its next step


def test_unclip_folder_round_trip(decoder: UnCLIPImageDecoder, tmp_path: Path) -> None:
    decoder.save_pretrained(tmp_path / "unclip")
    assert (tmp_path / "unclip" / "model_index.json").exists()
    loaded = load_kind("decoder", "unclip_image", tmp_path / "unclip")
    cond = torch.randn(1, decoder.cond_dim)
    a = decoder.sample(cond, steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(cond, steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-5)
