"""Agent tools, ChatCoDi2 and the converters, with real langchain-core objects and a tiny real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import ToolException

from codi2_sdk import Audio, Image, InvalidMediaError, Message, Text, Video, samples
from codi2_sdk.agents import ChatCoDi2, MediaStore, codi2_toolkit
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.formats import (
    from_langchain_blocks,
    from_mcp_content,
    from_openai_parts,
    to_langchain_blocks,
    to_mcp_content,
    to_openai_parts,
)


@pytest.fixture(scope="module")
def backend(tiny_model) -> LocalBackend:
    return LocalBackend(tiny_model)


SHORT = {"text": {"max_new_tokens": 4}}


def call(name: str, args: dict, call_id: str = "call_1") -> dict:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def test_toolkit_has_the_seven_tools_with_schemas(backend) -> None:
    tools = codi2_toolkit(backend, config=SHORT)
    assert [t.name for t in tools] == [
        "generate_image",
        "generate_audio",
        "generate_video",
        "edit_image_in_context",
        "edit_audio_in_context",
        "edit_video_in_context",
        "describe_media",
    ]
    schema = tools[3].tool_call_schema.model_json_schema()
    assert {"examples", "target"} <= set(schema["properties"]) and schema["properties"]["target"]["description"]
    assert all(t.response_format == "content_and_artifact" for t in tools)


def test_generate_image_with_a_tool_call_returns_an_artifact(backend) -> None:
    generate_image = codi2_toolkit(backend, config=SHORT)[0]
    message = generate_image.invoke(call("generate_image", {"prompt": "draw a red circle", "seed": 1}))
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call_1"
    assert "image_1" in message.content
    assert isinstance(message.artifact, Message) and isinstance(message.artifact.images[0], Image)


def test_show_image_adds_a_v1_image_block(backend) -> None:
    generate_image = codi2_toolkit(backend, config=SHORT)[0]
    message = generate_image.invoke(call("generate_image", {"prompt": "draw", "seed": 1, "show_image": True}))
    blocks = message.content
    assert blocks[0]["type"] == "text" and blocks[1]["type"] == "image" and blocks[1]["mime_type"] == "image/png"
    assert from_langchain_blocks([blocks[1]])[0].data == message.artifact.images[0].data


async def test_tools_run_async(backend) -> None:
    generate_audio = codi2_toolkit(backend, config=SHORT)[1]
    message = await generate_audio.ainvoke(call("generate_audio", {"prompt": "play a beep", "seed": 2}))
    assert "audio_1" in message.content and isinstance(message.artifact.audios[0], Audio)


def test_bad_references_raise_tool_exceptions(backend, tmp_path: Path, png_path: Path, wav_path: Path) -> None:
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    picture, clip = root / "square.png", root / "tone.wav"
    picture.write_bytes(png_path.read_bytes())
    clip.write_bytes(wav_path.read_bytes())
    (outside / "x.png").write_bytes(png_path.read_bytes())
    (root / "link.png").symlink_to(outside / "x.png")
    store = MediaStore(allowed_roots=[root])
    tools = {t.name: t for t in codi2_toolkit(backend, store=store, config=SHORT)}
    edit, describe = tools["edit_image_in_context"], tools["describe_media"]
    pair = [{"before": str(picture), "after": str(picture)}]
    cases = [
        (describe, {"media": str(outside / "x.png")}, "outside the folders"),
        (describe, {"media": str(root / ".." / "outside" / "x.png")}, "outside the folders"),
        (describe, {"media": str(root / "link.png")}, "outside the folders"),
        (describe, {"media": str(root / "missing.png")}, "no file"),
        (describe, {"media": "image_7"}, "unknown media id"),
        (edit, {"examples": pair, "target": str(clip)}, "an image is needed"),
    ]
    for tool, args, match in cases:
        with pytest.raises(ToolException, match=match):
            tool.invoke(args)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ToolException, match="not a usable medium"):
        describe.invoke({"media": str(root / "broken.png")})
    assert describe.invoke(call("describe_media", {"media": "square.png"})).content  # relative to the one root


def test_handled_tool_errors_go_back_to_the_agent(backend) -> None:
    describe = codi2_toolkit(backend, config=SHORT, handle_tool_error=True)[-1]
    message = describe.invoke(call("describe_media", {"media": "image_3"}))
    assert message.status == "error" and "unknown media id" in message.content


def test_a_scripted_agent_loop_generates_then_edits_in_context(backend, tmp_path: Path, png_path: Path) -> None:
    store = MediaStore(tmp_path / "media", allowed_roots=[png_path.parent])
    tools = {t.name: t for t in codi2_toolkit(backend, store=store, config=SHORT)}
    pairs = [{"before": str(png_path), "after": "image_1"}, {"before": "image_1", "after": str(png_path)}]
    planner = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage("", tool_calls=[call("generate_image", {"prompt": "draw a red circle", "seed": 3}, "c1")]),
                AIMessage(
                    "", tool_calls=[call("edit_image_in_context", {"examples": pairs, "target": "image_1"}, "c2")]
                ),
                AIMessage(
                    "",
                    tool_calls=[
                        call("generate_audio", {"prompt": "what does it sound like?", "inputs": ["image_2"]}, "c3")
                    ],
                ),
                AIMessage("Done: image_2 and audio_1."),
            ]
        )
    )
    history: list = [HumanMessage("Draw a red circle, edit it like my examples, then make its sound.")]
    while True:
        ai = planner.invoke(history)
        history.append(ai)
        if not ai.tool_calls:
            break
        history += [tools[c["name"]].invoke(c) for c in ai.tool_calls]
    results = [m for m in history if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == ["c1", "c2", "c3"]
    assert results[1].artifact.images and results[2].artifact.audios
    assert {"audio_1.wav", "image_1.png", "image_2.png"} <= {p.name for p in (tmp_path / "media").iterdir()}
    assert store.get("image_2") == results[1].artifact.images[0]


def test_video_tools_make_edit_and_describe_videos(tmp_path: Path) -> None:
    """With codi2-mini: a picture set in motion, a video edited the way one pair shows, and both described; the
    videos land in the store's folder and a clip is refused where a video is needed."""
    from codi2_sdk.mini.clips import Clip, probe_clip

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    samples.picture("a small red circle on the left").save(inputs / "circle.png")
    samples.clip("a large red square moving to the right", seed=1).save(inputs / "before.mp4")
    samples.clip("a large green square moving to the right", seed=2).save(inputs / "after.mp4")
    samples.clip("a small blue triangle moving to the left", seed=5).save(inputs / "query.mp4")
    samples.sound("two sine beeps at mi").save(inputs / "beeps.wav")
    store = MediaStore(tmp_path / "made", allowed_roots=[inputs])
    tools = {t.name: t for t in codi2_toolkit(LocalBackend.from_pretrained("codi2-mini"), store=store)}

    moving = tools["generate_video"].invoke(
        call("generate_video", {"prompt": "make it move to the right.", "inputs": ["circle.png"], "seed": 0})
    )
    assert moving.content.startswith("Made video_1: a 2.0 s 64x64 video by codi2-mini (seed 0)")
    made = moving.artifact.videos[0]
    assert probe_clip(made.to_frames()) == Clip("circle", "red", "small", "rightward")
    assert Video.open(tmp_path / "made" / "video_1.mp4").data == made.data

    pair = [{"before": "before.mp4", "after": "after.mp4"}]  # "make it green", shown once
    edited = tools["edit_video_in_context"].invoke({"examples": pair, "target": "query.mp4", "seed": 0})
    assert edited.startswith("Made video_2")
    assert probe_clip(store.get_video("video_2").to_frames()) == Clip("triangle", "green", "small", "leftward")

    said = tools["describe_media"].invoke(call("describe_media", {"media": "video_1"})).content
    assert said == "a small red circle moving to the right."  # asked "what happens?" by default
    with pytest.raises(ToolException, match=r"'beeps\.wav' is an audio clip, but a video is needed here"):
        tools["edit_video_in_context"].invoke({"examples": pair, "target": "beeps.wav"})


def test_chat_model_invoke_stream_and_ainvoke(backend, image) -> None:
    chat = ChatCoDi2(backend=backend, config={"seed": 5, "output_modality": "image", "text": {"max_new_tokens": 4}})
    human = HumanMessage(content=[{"type": "text", "text": "draw it"}, *to_langchain_blocks([image])])
    reply = chat.invoke([SystemMessage("be brief"), human])
    assert reply.content[0]["type"] == "image"
    direct = backend.generate(chat._request([SystemMessage("be brief"), human], {}))
    assert from_langchain_blocks(reply.content) == direct.parts
    streamed = None
    for chunk in chat.stream([SystemMessage("be brief"), human]):
        streamed = chunk if streamed is None else streamed + chunk
    streamed_images = [b for b in streamed.content if isinstance(b, dict) and b["type"] == "image"]
    assert streamed_images == [b for b in reply.content if b["type"] == "image"]
    text_reply = ChatCoDi2(
        backend=backend, config={"seed": 5, "output_modality": "text", "text": {"max_new_tokens": 3}}
    )
    assert isinstance(text_reply.invoke("hello").content, (str, list))


async def test_chat_model_ainvoke(backend) -> None:
    chat = ChatCoDi2(backend=backend, config={"seed": 5, "output_modality": "audio", "text": {"max_new_tokens": 3}})
    reply = await chat.ainvoke([HumanMessage("play it")])
    assert reply.content[0]["type"] == "audio"


def test_converters_round_trip(image, audio, tmp_path: Path) -> None:
    parts = [Text("look:"), image, audio]
    assert from_langchain_blocks(to_langchain_blocks(parts)) == parts
    openai = to_openai_parts(parts)
    assert openai[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert openai[2] == {
        "type": "input_audio",
        "input_audio": {"data": openai[2]["input_audio"]["data"], "format": "wav"},
    }
    assert from_openai_parts(openai) == parts
    mcp = to_mcp_content(parts)
    assert mcp[1]["mimeType"] == "image/png" and mcp[2]["mimeType"] == "audio/wav"
    assert from_mcp_content(mcp) == parts
    video = samples.clip("a blue square growing")  # MCP has no video content: an embedded resource carries it
    (resource,) = to_mcp_content([video])
    assert resource["type"] == "resource" and resource["resource"]["mimeType"] == "video/mp4"
    assert from_mcp_content([resource]) == [video]
    gif = Video.from_bytes(video.save(tmp_path / "clip.gif").read_bytes())  # a video kept as an animated GIF
    assert from_mcp_content(to_mcp_content([gif])) == [gif]


def test_converters_encode_to_the_formats_each_side_takes(image, audio, tmp_path: Path) -> None:
    jpeg = Image.open(image.save(tmp_path / "x.jpg"))
    flac = Audio.open(audio.save(tmp_path / "x.flac"))
    mcp = from_mcp_content(to_mcp_content([jpeg, flac]))
    assert mcp[0].mime_type == "image/png" and mcp[1].mime_type == "audio/wav"
    assert to_openai_parts([flac])[0]["input_audio"]["format"] == "wav"
    assert from_langchain_blocks("hi") == [Text("hi")]
    url_block = {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{to_langchain_blocks([image])[0]['base64']}"},
    }
    assert from_langchain_blocks([url_block]) == [image]


def test_converters_refuse_remote_urls_and_unknown_blocks() -> None:
    with pytest.raises(InvalidMediaError, match="never fetched"):
        from_openai_parts([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])
    with pytest.raises(InvalidMediaError, match="not supported"):
        from_mcp_content([{"type": "resource", "uri": "file:///etc/passwd"}])
    with pytest.raises(InvalidMediaError, match="'application/pdf' is not an image, audio or video"):
        from_mcp_content([{"type": "resource", "resource": {"uri": "x:y", "mimeType": "application/pdf", "blob": ""}}])
    with pytest.raises(InvalidMediaError, match="base64"):
        from_langchain_blocks([{"type": "image", "base64": "###"}])
    with pytest.raises(InvalidMediaError, match="URLs"):
        from_langchain_blocks([{"type": "image", "url": "https://example.com/x.png"}])
