"""The decoders' speed-ups (UNets through torch.compile, convolutions channels-last) make the media the plain
decoders make, and leave the weights, their names and saving as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from codi2_sdk import Conversation
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import CoDi2Model
from codi2_sdk.server import ServerSettings
from codi2_sdk.testing import answer_differences
from codi2_sdk.testing.twins import full_scale_twin

CONFIG = {"seed": 0, "text": {"max_new_tokens": 8}}


def _turn(backend: LocalBackend, modality: str):
    return Conversation(backend=backend, config={**CONFIG, "output_modality": modality}).send("draw a red circle .")


@pytest.fixture(scope="module")
def plain() -> LocalBackend:
    return LocalBackend(full_scale_twin())


def test_channels_last_decoders_make_the_same_media(plain) -> None:
    fast = LocalBackend(full_scale_twin(), channels_last=True)
    for modality in ("image", "audio", "video"):
        decoder = fast.model.decoder_for(modality)
        convolutions = [m for m in decoder.unet.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
        assert convolutions, modality
        for conv in convolutions:
            layout = torch.channels_last if isinstance(conv, nn.Conv2d) else torch.channels_last_3d
            assert conv.weight.is_contiguous(memory_format=layout), modality
        answer = _turn(fast, modality)
        assert answer.parts[0].type == modality
        assert answer_differences(answer, _turn(plain, modality)) == [], modality


def test_compiled_unets_make_the_same_pictures(plain) -> None:
    from torch._dynamo.utils import counters

    fast = LocalBackend(full_scale_twin(), compile_decoders=True)
    graphs = counters["stats"]["unique_graphs"]
    answer = _turn(fast, "image")  # the first decode compiles (tens of seconds on a CPU)
    assert counters["stats"]["unique_graphs"] > graphs, "the UNet ran uncompiled"
    assert answer_differences(answer, _turn(plain, "image")) == []


def test_a_sped_up_model_saves_the_weights_under_their_own_names(tmp_path) -> None:
    model = full_scale_twin()
    names = set(model.state_dict())
    model.speed_up_decoders(compile=True, channels_last=True)
    assert set(model.state_dict()) == names
    model.save_pretrained(tmp_path / "saved")
    again = CoDi2Model.from_pretrained(tmp_path / "saved").state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again[name]), name


def test_the_server_settings_load_codi2_mini_with_channels_last_decoders() -> None:
    fast = ServerSettings(channels_last=True).load_backend()
    conv = next(m for m in fast.model.decoder_for("image").unet.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    config = {"seed": 3, "output_modality": "image"}
    words = "draw a large red circle on the left."
    answer = Conversation(backend=fast, config=config).send(words)
    assert answer.images
    assert (
        answer_differences(answer, Conversation(backend=LocalBackend.from_pretrained(), config=config).send(words))
        == []
    )
