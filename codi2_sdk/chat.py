"""``codi2 chat``: a conversation in the terminal, with media from files and generated media saved to files.

Type a message and press Enter; media are attached with commands before the words they go with:

    /image PATH        attach a picture to the next message
    /audio PATH        attach an audio clip to the next message
    /video PATH        attach a video (MP4, WebM, or an animated GIF or WebP) to the next message
    /example IN OUT    add an in-context example pair (two files: before and after)
    /save PATH         save the conversation as JSON
    /undo              take back the last turn
    /help              these commands
    /quit              leave (or end the input)

Text streams as the model writes it; each picture or clip it makes is saved under ``--out`` and its path
printed. It reads lines from any input, so it also runs through a pipe.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import TextIO

from .backends.base import Backend
from .content import MEDIA_PARTS, Part, Text, open_media
from .conversation import Conversation
from .errors import Codi2Error, describe_error
from .events import MediaDone, TextDelta

__all__ = ["chat"]

HELP = "\n\n".join(__doc__.split("\n\n")[1:3]) if __doc__ else ""  # the lead sentence and the commands
_ATTACH = {f"/{kind}": part for kind, part in MEDIA_PARTS.items()}  # /image, /audio, /video
_USAGE = {  # "/save": "/save PATH - save the conversation as JSON", from the help's lines
    usage.split()[0]: f"{usage} - {what}"
    for usage, what in (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in HELP.splitlines() if "  " in line)
    if usage.startswith("/")
}


class _Session:
    """The terminal chat's state: the conversation, the files attached to the next message, the media written."""

    def __init__(self, conv: Conversation, out: Path, say: TextIO) -> None:
        self.conv, self.out, self.say = conv, out, say
        self.attached: list[Part] = []
        self.made = 0

    def show(self, text: str = "", end: str = "\n") -> None:
        self.say.write(text + end)
        self.say.flush()

    def command(self, line: str) -> bool:
        """Run a ``/command`` line; returns False for ``/quit``."""
        words = shlex.split(line)
        command, args = words[0], words[1:]
        if command in _ATTACH and len(args) > 1 and Path(" ".join(args)).is_file():
            args = [" ".join(args)]  # a path with spaces, typed without quotes
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self.show(HELP)
        elif command in _ATTACH and len(args) == 1:
            self.attached.append(_ATTACH[command].open(args[0]))  # the command says which: a GIF may be either
            self.show(f"attached {args[0]} to the next message")
        elif command == "/example" and len(args) == 2:
            self.conv.add_example(inputs=open_media(args[0]), outputs=open_media(args[1]))
            self.show(f"example {len(self.conv.examples)}: {args[0]} -> {args[1]}")
        elif command == "/save" and len(args) == 1:
            self.show(f"saved {self.conv.save(args[0])}")
        elif command == "/undo":
            self.conv.undo()
            self.show("took back the last turn")
        elif command in _USAGE:
            self.show(f"usage: {_USAGE[command]}")
        else:
            self.show(f"unknown command {command} (/help lists them)")
        return True

    def send(self, line: str) -> None:
        """Send a message (with the attached files) and print the answer as it streams; media go to files."""
        self.show("codi2: ", end="")
        for event in self.conv.stream(*self.attached, Text(line)):
            if isinstance(event, TextDelta):
                self.show(event.text, end="")
            elif isinstance(event, MediaDone):
                self.made += 1
                self.out.mkdir(parents=True, exist_ok=True)
                path = event.part.save(self.out / f"{self.made:03d}-{event.part.type}{event.part.suffix}")
                self.show(f" [{event.part.type}: {path}] ", end="")
        self.show()
        self.attached = []


def chat(
    backend: Backend,
    *,
    out: str | Path = "codi2-chat",
    lines: TextIO = sys.stdin,
    say: TextIO = sys.stdout,
    seed: int | None = None,
) -> Conversation:
    """Run the chat loop until ``/quit`` or the end of ``lines``; returns the conversation."""
    conv = Conversation(backend=backend, config={"seed": seed} if seed is not None else None)
    session = _Session(conv, Path(out), say)
    interactive = lines.isatty()
    session.show(f"codi2 chat with {backend.capabilities.model}: /help for commands, /quit to leave.")
    while True:
        if interactive:
            session.show("> ", end="")
        line = lines.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not session.command(line):
                    break
                continue
            session.send(line)
        except (Codi2Error, ValueError, OSError) as exc:
            session.show(f"\nerror: {describe_error(exc)}")
    return conv
