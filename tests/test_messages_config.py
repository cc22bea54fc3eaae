"""Messages, builders, in-context examples and generation settings."""

from __future__ import annotations

import PIL.Image
import pytest

from codi2_sdk import (
    Audio,
    Example,
    GenerationConfig,
    Image,
    InvalidRequestError,
    Message,
    Text,
    assistant,
    system,
    user,
)


def test_builders_turn_strings_into_text(image: Image, audio: Audio) -> None:
    msg = user("Make it ", image, " sound like ", audio)
    assert msg.role == "user"
    assert [p.type for p in msg.parts] == ["text", "image", "text", "audio"]
    assert msg.text == "Make it  sound like "
    assert msg.images == [image] and msg.audios == [audio] and msg.media == [image, audio]
    assert assistant("ok").role == "assistant"
    assert system("be brief").parts == [Text("be brief")]


def test_builders_refuse_other_types_with_a_hint() -> None:
    with pytest.raises(InvalidRequestError, match=r"Image\.from_pil"):
        user(PIL.Image.new("RGB", (4, 4)))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="int"):
        user(3)  # type: ignore[arg-type]


def test_message_role_is_checked() -> None:
    with pytest.raises(InvalidRequestError, match="role"):
        Message(role="robot", parts=[])  # type: ignore[arg-type]


def test_example_needs_both_sides(image: Image) -> None:
    with pytest.raises(InvalidRequestError, match="outputs"):
        Example(inputs=[image], outputs=[])


def test_config_defaults_and_ranges() -> None:
    cfg = GenerationConfig()
    assert cfg.output_modality == "auto" and cfg.seed is None and cfg.image.steps is None
    for bad in (
        {"seed": -1},
        {"output_modality": "smell"},
        {"text": {"top_p": 0}},
        {"image": {"steps": 0}},
        {"image": {"size": 100}},
        {"audio": {"duration": 0}},
        {"colour": "red"},
    ):
        with pytest.raises(InvalidRequestError):
            GenerationConfig.model_validate(bad)
    with pytest.raises(InvalidRequestError, match=r"image\.steps") as info:
        GenerationConfig(image={"steps": 0})  # built directly too: the SDK's error, naming the field
    assert info.value.errors[0]["loc"] == ("image", "steps")  # type: ignore[attr-defined]


def test_config_merge_is_deep_and_validated() -> None:
    base = GenerationConfig(seed=1, image={"steps": 10, "guidance_scale": 2.0})
    merged = base.merged({"image": {"steps": 20}, "output_modality": "image"})
    assert merged.image.steps == 20 and merged.image.guidance_scale == 2.0 and merged.seed == 1
    assert base.merged(GenerationConfig(seed=9)).seed == 9
    assert base.merged(None) is base
    with pytest.raises(InvalidRequestError, match=r"image\.steps"):
        base.merged({"image": {"steps": -5}})
