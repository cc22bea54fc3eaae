"""What the agent tools and ChatCoDi2 send to the model, pinned with a recording backend: example order,
before/after sides, system text, media, and per-call settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import ToolException

from codi2_sdk import Capabilities, Example, GenerationConfig, InvalidRequestError, Text, assistant, system, user
from codi2_sdk.agents import ChatCoDi2, MediaStore, codi2_toolkit
from codi2_sdk.formats import to_langchain_blocks
from codi2_sdk.testing import FunctionBackend, fake_audio, fake_image

RED, BLUE, GREEN, YELLOW = (fake_image(color=c) for c in ("red", "blue", "green", "yellow"))
LOW, HIGH = fake_audio(frequency=220), fake_audio(frequency=880)


def answering_with(kind: str) -> FunctionBackend:
    """Answers each request with a medium of ``kind`` (the last query's own), and records the request."""

    def answer(request):
        if kind == "text":
            return "a red circle"
        return [request.messages[-1].parts[0] if kind != "new" else fake_image(color="white")]

    return FunctionBackend(answer, capabilities=Capabilities(model="recorder"))


def test_in_context_edit_sends_each_pair_in_order_before_then_after(tmp_path: Path) -> None:
    backend = answering_with("image")
    store = MediaStore()
    ids = {name: store.put(part) for name, part in (("red", RED), ("blue", BLUE), ("green", GREEN), ("yellow", YELLOW))}
    tools = {t.name: t for t in codi2_toolkit(backend, store=store, config={"image": {"steps": 7}})}
    tools["edit_image_in_context"].invoke(
        {
            "examples": [
                {"before": ids["red"], "after": ids["blue"]},
                {"before": ids["green"], "after": ids["yellow"]},
            ],
            "target": ids["red"],
            "seed": 5,
        }
    )
    (request,) = backend.requests
    assert request.examples == [Example(inputs=[RED], outputs=[BLUE]), Example(inputs=[GREEN], outputs=[YELLOW])]
    assert request.messages == [user(RED)]
    assert request.config == GenerationConfig(seed=5, output_modality="image", image={"steps": 7})


def test_audio_edit_and_generation_send_what_the_agent_asked(tmp_path: Path) -> None:
    backend = answering_with("new")
    store = MediaStore()
    low, high = store.put(LOW), store.put(HIGH)
    tools = {t.name: t for t in codi2_toolkit(backend, store=store)}
    with pytest.raises(ToolException, match="without an audio"):  # the recorder answers with a picture
        tools["edit_audio_in_context"].invoke({"examples": [{"before": low, "after": high}], "target": high})
    tools["generate_image"].invoke({"prompt": "what does it look like?", "inputs": [low]})
    edit, generate = backend.requests
    assert edit.examples == [Example(inputs=[LOW], outputs=[HIGH])] and edit.messages == [user(HIGH)]
    assert edit.config.output_modality == "audio"
    assert generate.messages == [user(LOW, "what does it look like?")] and generate.config.seed is None


def test_describe_media_asks_a_question_about_the_medium() -> None:
    backend = answering_with("text")
    store = MediaStore()
    ref = store.put(RED)
    tool = {t.name: t for t in codi2_toolkit(backend, store=store)}["describe_media"]
    assert tool.invoke({"media": ref}) == "a red circle"
    assert tool.invoke({"media": ref, "question": "what colour is it?"}) == "a red circle"
    first, second = backend.requests
    assert first.messages == [user(RED, "what is this?")] and first.config.output_modality == "text"
    assert second.messages == [user(RED, "what colour is it?")]


def test_chat_model_sends_the_system_text_the_history_and_the_media() -> None:
    backend = answering_with("text")
    chat = ChatCoDi2(backend=backend, config={"seed": 3})
    chat.invoke(
        [
            SystemMessage("You answer briefly."),
            HumanMessage(content=[{"type": "text", "text": "what is this?"}, *to_langchain_blocks([RED])]),
            AIMessage("a red square"),
            HumanMessage(content=[*to_langchain_blocks([LOW]), {"type": "text", "text": "and this?"}]),
        ]
    )
    (request,) = backend.requests
    expected = [
        system("You answer briefly."),
        user("what is this?", RED),
        assistant("a red square"),
        user(LOW, "and this?"),
    ]
    assert request.messages == expected
    assert request.config.seed == 3


def test_the_store_lets_the_least_recently_used_go_past_its_memory_budget(tmp_path: Path) -> None:
    """A long-running agent or MCP server makes media without end: the store holds what fits its budget, reads
    what it let go back from its folder, and says so where it has none."""
    from codi2_sdk import MediaReferenceError

    pictures = [fake_image(color=c) for c in ("red", "blue", "green", "yellow")]
    budget = 2 * max(len(p.data) for p in pictures)  # room for two
    store = MediaStore(max_bytes=budget)
    refs = [store.put(p) for p in pictures[:2]]
    assert store.get(refs[0]) == pictures[0]  # now the most recently used: image_2 goes first
    refs.append(store.put(pictures[2]))
    assert len(store) == 2 and refs[0] in store and refs[1] not in store
    with pytest.raises(
        MediaReferenceError, match=r"media id 'image_2' was let go: .* within [\d,]+ bytes \(give it a directory"
    ):
        store.get("image_2")
    with pytest.raises(MediaReferenceError, match="unknown media id 'image_9'"):
        store.get("image_9")
    kept = MediaStore(tmp_path / "media", max_bytes=budget)
    refs = [kept.put(p) for p in pictures]
    assert len(kept) == 2 and all(ref in kept for ref in refs)
    assert [kept.get(ref) for ref in refs] == pictures  # the first two read back from their files
    for nonsense in (0, -5, 1.5, "1GB"):
        with pytest.raises(InvalidRequestError, match="max_bytes must be a whole number of bytes"):
            MediaStore(max_bytes=nonsense)  # type: ignore[arg-type]
    big = MediaStore(max_bytes=1)
    assert big.get(big.put(pictures[3])) == pictures[3]  # the newest is always kept, whatever the budget
    many = MediaStore()
    for _ in range(40):
        many.put(pictures[0])
    with pytest.raises(MediaReferenceError, match=r"known ids: image_40, image_39, .*, image_31 and 30 more$"):
        many.get("image_41")


def test_the_store_knows_its_ids_and_names_them_when_one_is_unknown(tmp_path: Path) -> None:
    from codi2_sdk import MediaReferenceError

    store = MediaStore()
    assert "image_1" not in store
    with pytest.raises(MediaReferenceError, match="known ids: none yet"):
        store.get("image_1")
    ref = store.put(RED)
    assert ref == "image_1" and ref in store and len(store) == 1 and store.get(ref) == RED
    with pytest.raises(MediaReferenceError, match=r"known ids: image_1$"):
        store.get("image_2")
    for not_a_string in (None, 3, b"image_1", ["image_1"]):
        with pytest.raises(MediaReferenceError, match="an id like"):
            store.get(not_a_string)  # type: ignore[arg-type]


def test_chat_model_takes_settings_the_langchain_way() -> None:
    backend = answering_with("text")
    chat = ChatCoDi2(backend=backend, seed=1, generation={"image": {"steps": 9}})
    chat.bind(seed=7, output_modality="text").invoke("what is this?")
    chat.invoke("what is this?", output_modality="audio")
    first, second = backend.requests
    assert (first.config.seed, first.config.output_modality, first.config.image.steps) == (7, "text", 9)
    assert (second.config.seed, second.config.output_modality) == (1, "audio")
    with pytest.raises(InvalidRequestError, match="does not take temprature"):
        chat.invoke("hi", temprature=0.5)  # a typo is refused, not ignored
    with pytest.raises(NotImplementedError, match="codi2_toolkit"):
        chat.bind_tools([])


def test_chat_model_streams_one_text_and_reports_metadata() -> None:
    from codi2_sdk.testing import ScriptedBackend

    chat = ChatCoDi2(backend=ScriptedBackend(["a small red circle on the left."] * 2), seed=4)
    merged = None
    for chunk in chat.stream("what is this?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and merged.content == "a small red circle on the left."  # one text, not blocks
    assert merged.response_metadata["seed"] == 4 and merged.response_metadata["seconds"] >= 0
    reply = chat.invoke("what is this?")
    assert (
        reply.response_metadata["model_name"] == chat.backend.capabilities.model
        and reply.response_metadata["seed"] == 4
    )


def test_mcp_client_objects_convert_and_bare_names_are_found_in_any_allowed_folder(tmp_path: Path) -> None:
    from mcp import types

    from codi2_sdk.formats import from_mcp_content, to_mcp_content

    objects = [types.TextContent(type="text", text="look"), types.ImageContent.model_validate(to_mcp_content([RED])[0])]
    assert from_mcp_content(objects) == [Text("look"), RED]

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    BLUE.save(second / "blue.png")
    store = MediaStore(allowed_roots=[first, second])
    assert store.get("blue.png") == BLUE  # found in the second folder, not "outside the folders"
    from codi2_sdk.errors import MediaReferenceError

    with pytest.raises(MediaReferenceError, match="outside"):
        store.get("../blue.png")
