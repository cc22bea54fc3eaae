"""Messages: a role and an ordered list of interleaved parts; and in-context examples.

>>> from codi2_sdk import user, Image
>>> msg = user("Make it blue:", Image.open("square.png"))   # doctest: +SKIP
>>> msg.text
'Make it blue:'
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

from pydantic import ConfigDict, Field

from ._base import SDKModel
from .content import Audio, Image, Part, Text, Video
from .errors import InvalidRequestError

__all__ = ["Example", "Message", "Role", "assistant", "system", "to_parts", "user"]

Role = Literal["system", "user", "assistant"]
PartLike = str | Text | Image | Audio | Video


class Message(SDKModel):
    """One turn of a conversation: who spoke and what, text and media interleaved in order."""

    def _repr_html_(self) -> str:
        """Notebooks show the role and the parts (pictures, players)."""
        from ._display import message_html

        return message_html(self)

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    parts: list[Part] = Field(default_factory=list)

    @property
    def text(self) -> str:
        """All text parts in order; pieces that meet without whitespace are joined with one space."""
        joined = ""
        for part in self.parts:
            if isinstance(part, Text) and part.text:
                if joined and not joined[-1].isspace() and not part.text[0].isspace():
                    joined += " "
                joined += part.text
        return joined

    @property
    def images(self) -> list[Image]:
        """The image parts, in order."""
        return [p for p in self.parts if isinstance(p, Image)]

    @property
    def audios(self) -> list[Audio]:
        """The audio parts, in order."""
        return [p for p in self.parts if isinstance(p, Audio)]

    @property
    def videos(self) -> list[Video]:
        """The video parts, in order."""
        return [p for p in self.parts if isinstance(p, Video)]

    @property
    def media(self) -> list[Image | Audio | Video]:
        """The media parts (images, audio and video clips), in order."""
        return [p for p in self.parts if isinstance(p, (Image, Audio, Video))]


class Example(SDKModel):
    """An in-context example: an input and the output the model should produce for it.

    CoDi-2 learns a transformation (an edit, a style) from a few such pairs, shown before the query.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[Part] = Field(min_length=1)
    outputs: list[Part] = Field(min_length=1)


def to_parts(items: Iterable[PartLike]) -> list[Text | Image | Audio | Video]:
    """Turn builder arguments into parts: a ``str`` becomes :class:`Text`, parts pass through."""
    parts: list[Text | Image | Audio | Video] = []
    for item in items:
        if isinstance(item, str):
            parts.append(Text(item))
        elif isinstance(item, (Text, Image, Audio, Video)):
            parts.append(item)
        else:
            raise InvalidRequestError(
                f"a message part must be str, Text, Image, Audio or Video, not {type(item).__name__}{_hint(item)}"
            )
    return parts


def _hint(item: object) -> str:
    """How to turn what was given into parts, for the usual slips."""
    if type(item).__module__.startswith("PIL"):
        return " (wrap PIL images with Image.from_pil)"
    if isinstance(item, (list, tuple)):
        return " (give a list's parts one by one: send(*parts), user(*parts))"
    if isinstance(item, (bytes, bytearray)):
        return " (wrap a file's bytes with Image.from_bytes, Audio.from_bytes or Video.from_bytes)"
    if isinstance(item, os.PathLike):
        return " (open a file with Image.open, Audio.open or Video.open, or codi2_sdk.content.open_media)"
    if type(item).__module__ == "numpy":
        return " (wrap arrays with Image.from_numpy, Audio.from_array or Video.from_frames)"
    return ""


def user(*items: PartLike) -> Message:
    """A user message; plain strings become :class:`Text`."""
    return Message(role="user", parts=to_parts(items))


def assistant(*items: PartLike) -> Message:
    """An assistant message; plain strings become :class:`Text`."""
    return Message(role="assistant", parts=to_parts(items))


def system(text: str) -> Message:
    """A system message (instructions for the whole conversation)."""
    if not isinstance(text, str):
        raise InvalidRequestError(f"system text must be str, not {type(text).__name__}")
    return Message(role="system", parts=[Text(text)])
