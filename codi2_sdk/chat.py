"""``codi2 chat``: a conversation in the terminal, with media from files and generated media saved to files.

Type a message and press Enter; media are attached with commands before the words they go with:

    /image PATH        attach a picture to the next message
    /audio PATH        attach an audio clip to the next message
    /example IN OUT    add an in-context example pair (two files: before and after)
    /save PATH         save the conversation as JSON
    /undo              take back the last turn
    /help              these commands
    /quit              leave (or end the input)

Text streams as the model writes it; each picture or clip it makes is saved under ``--out`` and its path
printed. It reads lines from any input, so it also runs through a pipe.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TextIO

from .backends.base import Backend
from .content import Part, Text, open_media
from .conversation import Conversation
from .errors import Codi2Error
from .types import MediaDone, TextDelta

__all__ = ["chat"]

HELP = __doc__.split("\n\n")[1] if __doc__ else ""


def chat(
    backend: Backend,
    *,
    out: str | Path = "codi2-chat",
    lines: TextIO = sys.stdin,
    say: TextIO = sys.stdout,
    seed: int | None = None,
) -> Conversation:
    """Run the chat loop until ``/quit`` or the end of ``lines``; returns the conversation."""
    out = Path(out)
    conv = Conversation(backend=backend, config={"seed": seed} if seed is not None else None)
    attached: list[Part] = []
    made = 0
    interactive = lines.isatty()

    def show(text: str = "", end: str = "\n") -> None:
        say.write(text + end)
        say.flush()

    show(f"codi2 chat with {backend.capabilities.model}: /help for commands, /quit to leave.")
    while True:
        if interactive:
            show("> ", end="")
        line = lines.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                words = shlex.split(line)
                command, args = words[0], words[1:]
                if command in ("/quit", "/exit"):
                    break
                if command == "/help":
                    show(HELP)
                elif command in ("/image", "/audio", "/video") and len(args) == 1:
                    attached.append(open_media(args[0]))
                    show(f"attached {args[0]} to the next message")
                elif command == "/example" and len(args) == 2:
                    conv.add_example(inputs=open_media(args[0]), outputs=open_media(args[1]))
                    show(f"example {len(conv.examples)}: {args[0]} -> {args[1]}")
                elif command == "/save" and len(args) == 1:
                    show(f"saved {conv.save(args[0])}")
                elif command == "/undo":
                    conv.undo()
                    show("took back the last turn")
                else:
                    show(f"unknown command or arguments: {line} (/help lists them)")
                continue
            show("codi2: ", end="")
            for event in conv.stream(*attached, Text(line)):
                if isinstance(event, TextDelta):
                    show(event.text, end="")
                elif isinstance(event, MediaDone):
                    made += 1
                    out.mkdir(parents=True, exist_ok=True)
                    suffix = {"image": ".png", "audio": ".wav", "video": ".mp4"}[event.part.type]
                    path = event.part.save(out / f"{made:03d}-{event.part.type}{suffix}")  # type: ignore[union-attr]
                    show(f" [{event.part.type}: {path}] ", end="")
            show()
            attached = []
        except (Codi2Error, ValueError, OSError) as exc:
            show(f"\nerror: {exc}")
    return conv
