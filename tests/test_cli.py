"""The ``codi2`` command, run as a user would: ``codi2 eval`` and ``codi2 serve`` (flags and ``CODI2_*``
variables) in their own processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from codi2_sdk import AuthenticationError, Conversation, Image, RemoteBackend

CODI2 = [sys.executable, "-m", "codi2_sdk.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_eval_prints_a_scored_table_as_json() -> None:
    out = subprocess.run(
        [*CODI2, "eval", "--cases", "1", "--tasks", "image_to_text,text_to_audio", "--json", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["model"] == "codi2-mini" and set(result["tasks"]) == {"image_to_text", "text_to_audio"}
    for row in result["tasks"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["baseline_kind"] == "chance"


def test_demo_writes_a_page_that_shows_every_turn(tmp_path: Path) -> None:
    import re

    from codi2_sdk import Conversation as Conv
    from codi2_sdk.mini.clips import Clip, probe_clip
    from codi2_sdk.mini.probes import probe_picture
    from codi2_sdk.mini.world import Picture

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [*CODI2, "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=True,
    )
    index = tmp_path / "demo" / "index.html"
    assert str(index) in out.stdout
    page = index.read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) >= 15 and all((index.parent / src).is_file() for src in sources)
    titles = ("Text to image", "In-context image edit", "Image to audio", "In-context audio edit", "Text to video")
    for title in (*titles, "In-context video edit", "three-turn", "Subject-driven generation"):
        assert title in page
    assert page.count('class="role">codi2-mini') == 10  # one answer per turn of the eight scenes
    edit = Conv.load(index.parent / "2-conversation.json")  # the 2-shot edit: make it large
    assert probe_picture(edit.history[-1].images[0].to_pil()).size == "large"  # type: ignore[union-attr]
    clip = Conv.load(index.parent / "6-conversation.json").history[-1].videos[0]  # the video edit: make it green
    assert probe_clip(clip.to_frames()) == Clip("triangle", "green", "small", "leftward")
    drawn = Conv.load(index.parent / "8-conversation.json").history[-1].images[0]  # the subject, large on the right
    assert probe_picture(drawn.to_pil()) == Picture("diamond", "blue", "large", "right")
    assert "<video controls" in page


def test_chat_through_a_pipe(tmp_path: Path) -> None:
    from codi2_sdk import samples
    from codi2_sdk.mini.probes import probe_picture

    samples.picture("a small red circle on the left").save(tmp_path / "red.png")
    samples.picture("a large red circle on the left").save(tmp_path / "big.png")
    samples.picture("a small blue square on the right").save(tmp_path / "query.png")
    script = "\n".join(
        [
            "/image red.png",
            "what is this?",
            "make it blue.",
            "/undo",
            "/example red.png big.png",
            "/image query.png",
            "/image nowhere.png",
            "/frobnicate",
            "describe it please",
            "/save chat.json",
            "/quit",
        ]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*CODI2, "chat", "--seed", "0", "--out", "made"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env=env,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert "codi2: a small red circle on the left." in lines
    assert any("[image: made/001-image.png]" in line for line in lines)  # the blue circle, saved
    assert "took back the last turn" in lines and "example 1: red.png -> big.png" in lines
    assert "error: nowhere.png: No such file or directory" in lines  # the path and the reason, no "[Errno 2]"
    assert any("unknown command" in line for line in lines)
    assert any("does not know the words" in line for line in lines)  # refused, and the chat goes on
    from codi2_sdk import Conversation as Conv

    saved = Conv.load(tmp_path / "chat.json")
    assert len(saved.examples) == 1 and [m.role for m in saved.history] == ["user", "assistant"]
    assert (tmp_path / "made" / "001-image.png").is_file()
    assert probe_picture(Image.open(tmp_path / "made" / "001-image.png").to_pil()).colour == "blue"


def test_chat_attaches_what_each_command_names(tmp_path: Path) -> None:
    """``/video`` reads an animated GIF as a video (``/image`` would take its first frame), and a file of another
    medium is refused in one line, the chat going on."""
    from codi2_sdk import samples

    samples.clip("a large red square moving to the right").save(tmp_path / "moving.gif")
    samples.sound("two sine beeps at mi").save(tmp_path / "beeps.wav")
    samples.picture("a small red circle on the left").save(tmp_path / "my photo.png")
    script = "\n".join(
        [
            *["/help", "/image beeps.wav", "/video moving.gif", "what happens?"],
            *["/image my photo.png", "what is this?", "/save", "/frob", "/quit"],  # a path with a space, no quotes
        ]
    )
    done = subprocess.run(
        [*CODI2, "chat", "--seed", "0"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert any(line.strip().startswith("/video PATH") for line in lines)  # /help lists it
    assert "error: image data is not a PNG, JPEG, WebP, GIF or BMP image" in lines
    assert "attached moving.gif to the next message" in lines
    assert "codi2: a large red square moving to the right." in lines
    assert "attached my photo.png to the next message" in lines and "codi2: a small red circle on the left." in lines
    assert "usage: /save PATH - save the conversation as JSON" in lines and "unknown command /frob" in " ".join(lines)


def test_a_users_mistake_is_one_line_and_status_1(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    mistakes = {
        ("chat", "--model", "nowhere"): "codi2 chat: error: no checkpoint folder at nowhere; checkpoints shipped",
        ("serve", "--model", "nowhere"): "codi2 serve: error: no checkpoint folder at nowhere",  # before it starts
        ("demo", "--out", str(tmp_path / "a-file" / "demo")): f"codi2 demo: error: {tmp_path / 'a-file'}",
        ("chat", "--url", f"http://127.0.0.1:{free_port()}"): "codi2 chat: error: GET http://127.0.0.1:",
    }
    for args, message in mistakes.items():
        out = subprocess.run([*CODI2, *args], input="hi\n", capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.startswith(message) and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)


def test_a_number_out_of_range_is_a_usage_error_and_a_bad_setting_one_line() -> None:
    flags = {
        ("eval", "--cases", "0"): "codi2 eval: error: argument --cases: 0 is out of range: it must be at least 1",
        ("serve", "--port", "99999"): "argument --port: 99999 is out of range: it must be from 0 to 65535",
        ("ui", "--port", "http"): "codi2 ui: error: argument --port: 'http' is not a whole number",
    }
    for args, message in flags.items():
        out = subprocess.run([*CODI2, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    settings = [  # the settings' own limits, from a flag or from a CODI2_* variable
        (["--max-batch-size", "1000"], {}, "max_batch_size: Input should be less than or equal to 256"),
        ([], {"CODI2_PORT": "eighty"}, "port: Input should be a valid integer"),
    ]
    for args, env, message in settings:
        out = subprocess.run(
            [*CODI2, "serve", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 1 and out.stderr.startswith("codi2 serve: error: invalid server settings"), out.stderr
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_eval_refuses_unknown_tasks() -> None:
    out = subprocess.run([*CODI2, "eval", "--tasks", "juggling"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "unknown tasks: juggling" in out.stderr


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the server did not start: {server.communicate()[0][-2000:]}")
        time.sleep(0.2)


@pytest.mark.parametrize("entry", ["codi2 serve", "python -m codi2_sdk.server"])
def test_serve_takes_flags_and_codi2_variables(tiny_checkpoint: Path, entry: str) -> None:
    port = free_port()
    command = [*CODI2, "serve"] if entry == "codi2 serve" else [sys.executable, "-m", "codi2_sdk.server"]
    env = {"CODI2_API_KEY": "from-the-environment", "CODI2_PORT": str(port), "CODI2_MAX_QUEUE": "3"}
    server = start([*command, "--model", str(tiny_checkpoint)], env, port)
    try:
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(AuthenticationError):
            RemoteBackend(url, max_retries=0).capabilities  # noqa: B018
        backend = RemoteBackend(url, api_key="from-the-environment")
        assert backend.capabilities.model == "codi2-tiny"
        answer = Conversation(backend=backend).send("draw", config={"seed": 0, "text": {"max_new_tokens": 3}})
        assert answer.role == "assistant"
    finally:
        server.terminate()
        server.wait(20)


def test_serve_flags_override_the_environment(tiny_checkpoint: Path) -> None:
    port = free_port()
    env = {"CODI2_API_KEY": "env-key", "CODI2_PORT": "1"}  # port 1 would fail: the flag must win
    server = start(
        [*CODI2, "serve", "--model", str(tiny_checkpoint), "--port", str(port), "--api-key", "flag-key"], env, port
    )
    try:
        assert RemoteBackend(f"http://127.0.0.1:{port}", api_key="flag-key").capabilities.model == "codi2-tiny"
    finally:
        server.terminate()
        server.wait(20)


def test_version() -> None:
    from codi2_sdk import __version__

    out = subprocess.run([*CODI2, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"codi2-sdk {__version__}"


def test_remote_backend_reads_its_address_and_key_from_the_environment(monkeypatch) -> None:
    from codi2_sdk import InvalidRequestError

    monkeypatch.delenv("CODI2_BASE_URL", raising=False)
    with pytest.raises(InvalidRequestError, match="CODI2_BASE_URL"):
        RemoteBackend()
    monkeypatch.setenv("CODI2_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("CODI2_API_KEY", "k-123")
    backend = RemoteBackend()
    assert backend.base_url == "http://127.0.0.1:9" and backend._headers == {"Authorization": "Bearer k-123"}
    assert RemoteBackend("http://127.0.0.1:8", api_key="given")._headers == {"Authorization": "Bearer given"}


def saved_chats(folder: Path) -> list[Path]:
    """Three conversations an app saved: a picture moved right on request, then described."""
    from codi2_sdk import assistant, samples
    from codi2_sdk.testing import ScriptedBackend

    paths = []
    for i, (colour, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "triangle")]):
        moved = samples.picture(f"a small {colour} {shape} on the right")
        said = f"a small {colour} {shape} on the right"
        conv = Conversation(backend=ScriptedBackend([assistant(moved), assistant(said)]))
        conv.send(samples.picture(f"a small {colour} {shape} on the left"), "move it to the right.")
        conv.send("what is this?")
        paths.append(conv.save(folder / f"chat{i}.json"))
    return paths


def test_finetune_learns_from_saved_conversations_with_held_out_loss(tmp_path: Path) -> None:
    """``codi2 finetune`` on an app's saved conversations (and a manifest): the held-out loss is printed at each
    evaluation, and the model saved answers."""
    from codi2_sdk import LocalBackend, samples

    chats = saved_chats(tmp_path)
    samples.picture("a large blue square in the center").save(tmp_path / "square.png")
    manifest = tmp_path / "more.jsonl"
    turn = {"role": "user", "content": [{"type": "text", "text": "draw a large blue square in the center."}]}
    manifest.write_text(
        json.dumps({"messages": [turn, {"role": "assistant", "content": [{"type": "image", "path": "square.png"}]}]})
    )
    run = [*CODI2, "finetune", str(chats[0]), str(chats[1]), str(manifest), "--eval", str(chats[2])]
    run += ["--out", str(tmp_path / "mine"), "--steps", "4", "--batch-size", "2", "--eval-every", "2", "--threads", "1"]
    run += ["--keep-best", str(tmp_path / "best")]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    held_out = {int(line.split(":")[0][5:]): float(line.split()[-1]) for line in lines if "held-out" in line}
    assert sorted(held_out) == [2, 4]
    kept = json.loads((tmp_path / "best" / "held_out.json").read_text())  # --keep-best: the lower of the two
    assert kept["step"] == min(held_out, key=held_out.__getitem__)
    assert round(kept["held_out"]["loss"], 4) == min(held_out.values())
    assert (
        lines[-1]
        == f"5 examples, 4 steps; the model is in {tmp_path / 'mine'}/ (codi2 chat --model {tmp_path / 'mine'})"
    )
    answer = Conversation(LocalBackend.from_pretrained(tmp_path / "mine")).send("draw a small red circle on the left.")
    assert answer.images


def test_finetune_refuses_what_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    chats = saved_chats(tmp_path)
    (tmp_path / "odd.json").write_text(chats[0].read_text().replace("move it to the right.", "flip it."))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    for data, out, says in [
        ([tmp_path / "odd.json"], "new", r"odd.json\[0\]: the model does not know the words 'flip'"),
        ([chats[0]], "taken", "taken exists and is kept: give --out a new folder"),
        ([tmp_path / "nowhere.json"], "new", "nowhere.json"),
        ([chats[0], "--keep-best", tmp_path / "best"], "new", "--keep-best needs --eval"),
        ([chats[0], "--eval", chats[1], "--keep-best", tmp_path / "taken"], "new", "taken exists and holds no kept"),
    ]:
        run = [*CODI2, "finetune", *map(str, data), "--out", str(tmp_path / out), "--steps", "1"]
        done = subprocess.run(run, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and done.stderr.startswith("codi2 finetune: error: "), done.stderr[-2000:]
        assert re.search(says, done.stderr) and "Traceback" not in done.stderr
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine" and not (tmp_path / "new").exists()
