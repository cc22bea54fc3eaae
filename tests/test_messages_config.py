"""Messages, builders, in-context examples and generation settings."""

from __future__ import annotations

from pathlib import Path

import PIL.Image
import pytest

from codi2_sdk import (
    Audio,
    Conversation,
    Example,
    GenerationConfig,
    GenerationRequest,
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
    picture = Image.from_pil(PIL.Image.new("RGB", (4, 4)))
    slips = {
        "one by one: send\\(\\*parts\\)": [picture, picture],  # a list where its items go
        "Image.from_bytes, Audio.from_bytes": picture.data,
        "Image.open, Audio.open or Video.open": Path("photo.png"),
        "Image.from_numpy, Audio.from_array or Video.from_frames": picture.to_numpy(),
    }
    for hint, item in slips.items():
        with pytest.raises(InvalidRequestError, match=hint):
            user(item)  # type: ignore[arg-type]


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


def test_a_misplaced_or_misspelt_setting_names_the_one_meant() -> None:
    cases = {
        "max_new_tokens": r"max_new_tokens: unknown field; did you mean text\.max_new_tokens\?",
        "steps": r"steps: unknown field; did you mean image\.steps or audio\.steps or video\.steps\?",
        "sed": r"sed: unknown field; did you mean seed\?",
        "output": r"did you mean output_modality\?",
        "colour": r"colour: unknown field$",
    }
    for key, message in cases.items():
        with pytest.raises(InvalidRequestError, match=message):
            Conversation(config={key: 3})
    with pytest.raises(InvalidRequestError, match=r"image\.step: unknown field; did you mean image\.steps\?"):
        GenerationConfig(image={"step": 3})
    # the same in a request as the server reads it, down through the list of messages and the union of parts
    body = {"messages": [{"role": "user", "parts": [{"type": "text", "txt": "hi"}]}], "config": {"steps": 3}}
    with pytest.raises(InvalidRequestError) as info:
        GenerationRequest.model_validate(body)
    assert "messages.0.parts.0.text.txt: unknown field; did you mean messages.0.parts.0.text.text?" in str(info.value)
    assert "config.steps: unknown field; did you mean config.image.steps or" in str(info.value)


def test_config_merge_is_deep_and_validated() -> None:
    base = GenerationConfig(seed=1, image={"steps": 10, "guidance_scale": 2.0})
    merged = base.merged({"image": {"steps": 20}, "output_modality": "image"})
    assert merged.image.steps == 20 and merged.image.guidance_scale == 2.0 and merged.seed == 1
    assert base.merged(GenerationConfig(seed=9)).seed == 9
    assert base.merged(None) is base
    with pytest.raises(InvalidRequestError, match=r"image\.steps"):
        base.merged({"image": {"steps": -5}})
