"""Conversation over the scripted test backend: turns, examples, streams, fork, undo, save and load."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codi2_sdk import (
    Audio,
    Backend,
    Capabilities,
    Conversation,
    ConversationFileError,
    Done,
    GenerationRequest,
    Image,
    InvalidRequestError,
    MediaDone,
    Message,
    ModelError,
    Progress,
    TextDelta,
    assistant,
)
from codi2_sdk.testing import FunctionBackend, ScriptedBackend


def test_send_appends_turn_and_answer(image: Image) -> None:
    backend = ScriptedBackend(["A red square.", ["Here:", image]])
    conv = Conversation(backend=backend, system="Be brief.", config={"seed": 5})
    first = conv.send("What is this?", image)
    assert first.text == "A red square."
    second = conv.send("Draw it again.", config={"output_modality": "image"})
    assert second.images == [image]
    assert [m.role for m in conv.history] == ["user", "assistant", "user", "assistant"]
    sent = backend.requests[1]
    assert [m.role for m in sent.messages] == ["system", "user", "assistant", "user"]
    assert sent.config.seed == 5 and sent.config.output_modality == "image"
    assert conv.config.output_modality == "auto"  # per-turn settings do not stick


def test_examples_are_sent_before_the_query(image: Image, audio: Audio) -> None:
    backend = ScriptedBackend([[audio]])
    conv = Conversation(backend=backend)
    conv.add_example(inputs=image, outputs=[audio])
    conv.add_example(inputs=["a", image], outputs="b")
    conv.send(image)
    sent = backend.requests[0]
    assert len(sent.examples) == 2
    assert sent.examples[0].inputs == [image] and sent.examples[0].outputs == [audio]
    assert conv.examples == sent.examples
    conv.clear_examples()
    assert conv.examples == []


def test_failed_backend_leaves_conversation_unchanged() -> None:
    backend = ScriptedBackend(["only one answer"])
    conv = Conversation(backend=backend)
    conv.send("one")
    before = conv.history
    with pytest.raises(ModelError, match="no answer left"):
        conv.send("two")
    assert conv.history == before


def test_empty_turn_and_bad_backend_are_refused() -> None:
    conv = Conversation(backend=ScriptedBackend([]))
    for empty in [(), ("",), (" ", "\n")]:  # nothing to answer: refused, not sent to the model
        with pytest.raises(InvalidRequestError, match=r"^invalid GenerationRequest: the last user message is empty"):
            conv.send(*empty)
    assert conv.messages == []
    with pytest.raises(InvalidRequestError, match="Backend"):
        Conversation(backend="codi2-mini")  # type: ignore[arg-type]


def test_output_modality_the_backend_cannot_write_is_refused() -> None:
    backend = ScriptedBackend(["x"], capabilities=Capabilities(model="t", output_modalities=["text"]))
    with pytest.raises(InvalidRequestError, match="cannot write audio"):
        Conversation(backend=backend).send("hum", config={"output_modality": "audio"})


def test_stream_yields_events_and_appends_on_done(image: Image) -> None:
    conv = Conversation(backend=ScriptedBackend([["A picture:", image]]))
    events = list(conv.stream("draw"))
    assert [type(e) for e in events] == [TextDelta, MediaDone, Done]
    assert isinstance(events[1], MediaDone) and events[1].part == image
    assert conv.history[-1] == events[-1].message  # type: ignore[union-attr]


class SlowStreamingBackend(Backend):
    """Streams progress events forever until closed; records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(model="slow")

    def generate(self, request: GenerationRequest) -> Message:
        raise AssertionError("not used")

    def stream(self, request: GenerationRequest) -> Iterator[Progress]:
        try:
            step = 0
            while True:
                step += 1
                yield Progress(modality="image", part_index=0, step=step, total=10**9)
        finally:
            self.closed = True


def test_stopping_a_stream_cancels_and_appends_nothing() -> None:
    backend = SlowStreamingBackend()
    conv = Conversation(backend=backend)
    stream = conv.stream("draw")
    for event in stream:
        if isinstance(event, Progress) and event.step == 3:
            break
    stream.close()
    assert backend.closed and conv.history == []


async def test_async_twins(image: Image) -> None:
    conv = Conversation(backend=ScriptedBackend(["hi", ["x", image]]))
    answer = await conv.asend("hello")
    assert answer.text == "hi"
    events = [e async for e in conv.astream("draw")]
    assert isinstance(events[-1], Done) and conv.history[-1].images == [image]


async def test_closing_an_async_stream_cancels_the_worker() -> None:
    backend = SlowStreamingBackend()
    conv = Conversation(backend=backend)
    stream = conv.astream("draw")
    async for event in stream:
        if isinstance(event, Progress) and event.step == 3:
            break
    await stream.aclose()
    assert backend.closed and conv.history == []


def test_fork_and_undo() -> None:
    conv = Conversation(backend=ScriptedBackend(["1", "2", "3"]))
    conv.send("a")
    branch = conv.fork()
    branch.send("b")
    assert len(conv.history) == 2 and len(branch.history) == 4
    removed = branch.undo()
    assert [m.text for m in removed] == ["b", "2"]
    assert branch == conv
    conv.undo()
    with pytest.raises(InvalidRequestError, match="nothing to undo"):
        conv.undo()


def test_save_and_load_round_trip(tmp_path: Path, image: Image, audio: Audio) -> None:
    conv = Conversation(backend=ScriptedBackend([["Sure:", image, audio]]), system="sys", config={"seed": 2})
    conv.add_example(inputs=[image], outputs=[audio])
    conv.send("Make a picture and its sound.")
    path = conv.save(tmp_path / "conv.json")
    loaded = Conversation.load(path)
    assert loaded == conv
    assert loaded.history[-1].images[0].data == image.data
    assert loaded.history[-1].audios[0].data == audio.data
    assert json.loads(path.read_text())["schema_version"] == 1
    assert not list(tmp_path.glob(".conv.json.*"))  # no temp file left behind


def test_save_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    conv = Conversation(backend=ScriptedBackend(["x"]))
    conv.save(path)
    conv.send("y")
    conv.save(path)
    assert len(Conversation.load(path).history) == 2


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", "not a conversation file"),
        (b'{"schema_version": 99, "history": []}', "schema version 99"),
        (b"[1, 2]", "schema version None"),
        (
            b'{"schema_version": 1, "history": [{"role": "user", "parts": [{"type": "image", "data": "AAAA"}]}]}',
            "invalid conversation",
        ),
    ],
)
def test_loading_a_bad_file_raises_and_leaves_it_untouched(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConversationFileError, match=match):
        Conversation.load(path)
    assert path.read_bytes() == content


def test_default_backend_is_resolved_lazily() -> None:
    conv = Conversation()
    assert "default" in repr(conv)  # nothing is loaded until a turn needs it


def test_scripted_backend_checks_its_script() -> None:
    with pytest.raises(ValueError, match="assistant"):
        ScriptedBackend([Message(role="user", parts=[])])
    backend = ScriptedBackend([assistant("x")])
    assert backend.remaining == 1


def test_saving_to_a_folder_or_into_a_missing_one_names_the_path_given(tmp_path: Path) -> None:
    conv = Conversation(backend=ScriptedBackend(["hi"]))
    conv.send("hello")
    with pytest.raises(FileNotFoundError, match=r"no folder '.*chats' to save 'today\.json' in") as missing:
        conv.save(tmp_path / "chats" / "today.json")
    assert missing.value.filename == str(tmp_path / "chats" / "today.json")
    (tmp_path / "chat.json").mkdir()
    with pytest.raises(IsADirectoryError, match="a folder, not a file") as folder:
        conv.save(tmp_path / "chat.json")
    assert folder.value.filename == str(tmp_path / "chat.json")
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]  # no temporary file left beside it, or above
    assert list(tmp_path.parent.glob(f".{tmp_path.name}.*")) == []


def test_a_crash_mid_save_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "conv.json"
    conv = Conversation(backend=ScriptedBackend(["first", "second"]))
    conv.send("one")
    conv.save(path)
    before = path.read_bytes()
    conv.send("two")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        conv.save(path)
    assert path.read_bytes() == before  # the old conversation, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.json"]  # and no temp file


def test_save_keeps_the_file_mode_and_cleans_up_after_a_crashed_save(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    conv = Conversation(backend=ScriptedBackend(["x"]))
    conv.save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # a new file: the usual permissions
    path.chmod(0o640)
    stale, fresh = tmp_path / ".conv.json.0a1b2c.tmp", tmp_path / ".conv.json.3d4e5f.tmp"
    stale.write_bytes(b"{half a conv")
    fresh.write_bytes(b"{being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    conv.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not stale.exists() and fresh.exists()  # a save in progress elsewhere is left alone


def test_loading_deeply_nested_json_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    for content in (
        b"[" * 200_000 + b"]" * 200_000,
        b'{"schema_version": 1, "system": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ):
        path.write_bytes(content)
        with pytest.raises(ConversationFileError):
            Conversation.load(path)


def test_a_stream_that_fails_midway_leaves_the_conversation_unchanged() -> None:
    def stream(request):
        yield "half an answer"
        raise ModelError("the decoder ran out of memory")

    conv = Conversation(backend=FunctionBackend(stream_fn=stream))
    seen = []
    with pytest.raises(ModelError, match="out of memory"):
        for event in conv.stream("hi"):
            seen.append(event)
    assert [type(e).__name__ for e in seen] == ["TextDelta"] and conv.history == []


_SAVER = """
import sys
import numpy as np
from codi2_sdk import Audio, Conversation
from codi2_sdk.testing import ScriptedBackend

path = sys.argv[1]
rng = np.random.default_rng(0)
versions = []
for size in (300_000, 900_000):  # two conversations of different lengths, so a cut one can be told apart
    clip = Audio.from_array(rng.uniform(-0.5, 0.5, size).astype(np.float32), sample_rate=16000)
    conv = Conversation(backend=ScriptedBackend([f"answer of {size}"]))
    conv.send(f"turn of {size}", clip)
    versions.append(conv)
versions[0].save(path)
print("ready", flush=True)
while True:
    for conv in versions:
        conv.save(path)
"""


def test_a_save_killed_at_any_moment_leaves_the_old_file_or_the_new_one_whole(tmp_path: Path) -> None:
    """As a user's machine would: a process saving over and over is killed (SIGKILL) at random moments, and the
    file must always load as one of the two conversations it was writing, never cut short."""
    import random
    import signal
    import subprocess
    import sys

    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    path = tmp_path / "conv.json"
    rng = random.Random(0)
    seen: set[str] = set()
    for _ in range(12):
        saver = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        assert saver.stdout is not None and saver.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        conv = Conversation.load(path)  # raises ConversationFileError on a cut or half-written file
        turn = conv.history[0].text
        assert turn in ("turn of 300000", "turn of 900000")
        assert conv.history[1].text == turn.replace("turn", "answer")
        assert len(conv.history[0].audios[0].to_numpy()) == int(turn.split()[-1])
        seen.add(turn)
    assert len(seen) == 2  # the kills landed while each of the two was being written


async def test_cancelling_an_async_send_stops_the_generation() -> None:
    """``asend`` runs as a stream: when its caller gives up (a timeout, a cancelled task), the backend's stream is
    closed, so the work behind it stops instead of running on in a thread, and the turn is not appended."""
    import asyncio

    backend = SlowStreamingBackend()  # streams forever; its generate() is never called
    conv = Conversation(backend=backend)
    with pytest.raises(asyncio.TimeoutError):  # the builtin TimeoutError from Python 3.11
        await asyncio.wait_for(conv.asend("draw"), timeout=0.2)
    assert backend.closed and conv.history == []
