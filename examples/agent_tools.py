#!/usr/bin/env python
"""A LangChain tool-calling loop over codi2-mini, offline.

A scripted planner (langchain-core's GenericFakeChatModel) stands in for the agent's LLM: it asks the
CoDi-2 tools to (1) draw a picture, (2) edit it in context from two before/after example pairs on disk,
(3) turn the edited picture into sound, (4) describe that sound (the model reads its own clip), and (5) set the
edited picture in motion as a video. Every tool result is a real ToolMessage with the media as its artifact; the
media land in --out (default ./out/agent_tools/).

    python examples/agent_tools.py
    python examples/agent_tools.py --url http://127.0.0.1:8000   # the tools call a codi2 server instead
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from codi2_sdk import Codi2Error, Image, LocalBackend, RemoteBackend
from codi2_sdk.agents import MediaStore, codi2_toolkit
from codi2_sdk.mini.clips import Clip, probe_clip
from codi2_sdk.mini.probes import probe_picture, probe_sound
from codi2_sdk.mini.tasks import parse_sound
from codi2_sdk.mini.world import Picture, picture_to_sound, render_picture

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seed", type=int, default=0, help="the seed every tool call asks for (default 0)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/agent_tools"), help="where the media go")


def call(name: str, args: dict, call_id: str) -> dict:
    """A tool call as a planner's message carries it."""
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def main(args: argparse.Namespace) -> int:
    out = args.out
    examples_dir = out / "examples"
    examples_dir.mkdir(parents=True, exist_ok=True)

    # Two before/after pairs that show an edit (make it small) without saying it.
    rng = np.random.default_rng(0)
    for name, before, after in [
        ("pair1", Picture("square", "cyan", "large", "left"), Picture("square", "cyan", "small", "left")),
        ("pair2", Picture("diamond", "yellow", "large", "right"), Picture("diamond", "yellow", "small", "right")),
    ]:
        Image.from_pil(render_picture(before, rng)).save(examples_dir / f"{name}_before.png")
        Image.from_pil(render_picture(after, rng)).save(examples_dir / f"{name}_after.png")

    store = MediaStore(out / "media", allowed_roots=[examples_dir])
    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    tools = {tool.name: tool for tool in codi2_toolkit(backend, store=store)}

    pairs = [
        {"before": str(examples_dir / "pair1_before.png"), "after": str(examples_dir / "pair1_after.png")},
        {"before": str(examples_dir / "pair2_before.png"), "after": str(examples_dir / "pair2_after.png")},
    ]
    planner = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    "",
                    tool_calls=[
                        call(
                            "generate_image",
                            {"prompt": "draw a large red circle in the center.", "seed": args.seed},
                            "1",
                        )
                    ],
                ),
                AIMessage(
                    "",
                    tool_calls=[
                        call("edit_image_in_context", {"examples": pairs, "target": "image_1", "seed": args.seed}, "2")
                    ],
                ),
                AIMessage(
                    "",
                    tool_calls=[
                        call(
                            "generate_audio",
                            {"prompt": "what does it sound like?", "inputs": ["image_2"], "seed": args.seed},
                            "3",
                        )
                    ],
                ),
                AIMessage("", tool_calls=[call("describe_media", {"media": "audio_1"}, "4")]),
                AIMessage(
                    "",
                    tool_calls=[
                        call(
                            "generate_video", {"prompt": "make it grow.", "inputs": ["image_2"], "seed": args.seed}, "5"
                        )
                    ],
                ),
                AIMessage("Done: image_1 was drawn, image_2 is its edit, audio_1 is its sound, video_1 shows it grow."),
            ]
        )
    )

    history: list = [HumanMessage("Draw a red circle, edit it like the examples, let me hear it, and make it grow.")]
    said: dict[str, str] = {}
    while True:
        ai = planner.invoke(history)
        history.append(ai)
        if not ai.tool_calls:
            print(f"agent: {ai.content}")
            break
        for tool_call in ai.tool_calls:
            result: ToolMessage = tools[tool_call["name"]].invoke(tool_call)
            history.append(result)
            said[tool_call["name"]] = str(result.content)
            print(f"{tool_call['name']}({tool_call['args']}) -> {result.content}")

    print(f"media written to {store.directory}: {sorted(p.name for p in store.directory.iterdir())}")

    # Read the media back with the mini world's probes: a wrong picture or sound fails the run.
    drawn, edited = (probe_picture(store.get_image(ref).to_pil()) for ref in ("image_1", "image_2"))
    heard = probe_sound(store.get_audio("audio_1").to_numpy())
    moving = probe_clip(store.get_video("video_1").to_frames())
    checks = {
        "image_1 is a large red circle in the center": drawn == Picture("circle", "red", "large", "center"),
        "image_2 is image_1 made small": edited == Picture("circle", "red", "small", "center"),
        "audio_1 is the sound of image_2": heard == picture_to_sound(edited),
        "describe_media hears audio_1 as it is": parse_sound(said["describe_media"]) == heard,
        "video_1 is image_2 growing": moving == Clip("circle", "red", "small", "growing"),
    }
    for claim, right in checks.items():
        print(f"{'right' if right else 'WRONG'}: {claim}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(parser.parse_args()))
    except Codi2Error as exc:  # a server that is down, a checkpoint that is not there: one line, not a traceback
        sys.exit(f"{parser.prog}: error: {exc}")
