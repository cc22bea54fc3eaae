"""``codi2 mcp`` driven by the real MCP client session over stdio: list the tools, make a picture, edit by
example, describe a file, set the picture in motion; a bad reference comes back as a tool error."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from codi2_sdk import Image, samples
from codi2_sdk.agents.langchain_tools import DescribeArgs, EditArgs, GenerateArgs
from codi2_sdk.formats import from_mcp_content
from codi2_sdk.mini.clips import Clip, probe_clip
from codi2_sdk.mini.probes import probe_picture

pytest.importorskip("langchain_core")


def test_mcp_client_lists_and_calls_the_tools_over_stdio(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, text in [
        ("query", "a small green circle on the left"),
        ("before", "a small red square on the right"),
        ("after", "a large red square on the right"),
    ]:
        samples.picture(text).save(inputs / f"{name}.png")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "codi2_sdk.cli", "mcp", "--allowed-root", str(inputs), "--media-dir", str(tmp_path / "made")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )

    async def session_run() -> None:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert list(listed) == [
                "generate_image", "generate_audio", "generate_video", "edit_image_in_context", "edit_audio_in_context",
                "edit_video_in_context", "describe_media",
            ]  # fmt: skip
            assert listed["generate_image"].input_schema == GenerateArgs.model_json_schema()  # the LangChain schema
            assert listed["edit_image_in_context"].input_schema == EditArgs.model_json_schema()
            assert listed["describe_media"].input_schema == DescribeArgs.model_json_schema()

            made = await session.call_tool(
                "generate_image", {"prompt": "draw a large blue diamond on the right.", "seed": 0}
            )
            assert not made.is_error and made.content[0].text.startswith("Made image_1")
            picture = Image.from_bytes(base64.b64decode(made.content[1].data))
            assert made.content[1].mime_type == "image/png" and probe_picture(picture.to_pil()).shape == "diamond"
            assert (tmp_path / "made" / "image_1.png").is_file()

            edit = {"examples": [{"before": str(inputs / "before.png"), "after": str(inputs / "after.png")}],
                    "target": str(inputs / "query.png"), "seed": 0}  # fmt: skip
            edited = await session.call_tool("edit_image_in_context", edit)
            seen = probe_picture(Image.from_bytes(base64.b64decode(edited.content[1].data)).to_pil())
            assert seen is not None and (seen.size, seen.colour, seen.shape) == ("large", "green", "circle")

            told = await session.call_tool("describe_media", {"media": "image_1"})
            assert told.content[0].text == "a large blue diamond on the right."

            moving = await session.call_tool(
                "generate_video", {"prompt": "make it move to the left.", "inputs": ["image_1"], "seed": 0}
            )
            assert not moving.is_error and moving.content[0].text.startswith("Made video_1")
            (video,) = from_mcp_content(moving.content[1:])  # an embedded resource: MCP has no video content
            assert probe_clip(video.to_frames()) == Clip("diamond", "blue", "large", "leftward")
            assert (tmp_path / "made" / "video_1.mp4").read_bytes() == video.data

            wrong = await session.call_tool("describe_media", {"media": "/etc/passwd"})
            assert wrong.is_error and "outside" in wrong.content[0].text
            missing = await session.call_tool("generate_audio", {})
            assert missing.is_error and "prompt" in missing.content[0].text

    anyio.run(session_run)


def test_mcp_over_streamable_http(tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "codi2_sdk.cli", "mcp", "--http", "--port", str(port)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "codi2 mcp --http did not start"
                time.sleep(0.3)

        async def session_run() -> None:
            url = f"http://127.0.0.1:{port}/mcp"
            async with streamable_http_client(url) as (read, write, *_), ClientSession(read, write) as session:
                await session.initialize()
                assert len((await session.list_tools()).tools) == 7
                made = await session.call_tool("generate_audio", {"prompt": "play two sine beeps at mi.", "seed": 0})
                assert not made.is_error and made.content[1].mime_type == "audio/wav"

        anyio.run(session_run)
    finally:
        server.terminate()
        server.wait(30)
