"""SDK parts <-> OpenAI chat completion content parts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..content import Audio, Image, Part, Text, Video
from ..errors import InvalidMediaError
from ._common import as_wav, b64, block_type, data_url, from_data_url, unb64

__all__ = ["from_openai_parts", "to_openai_parts"]

AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3"}
"""OpenAI's ``input_audio`` takes wav and mp3; other audio is sent as wav."""


def to_openai_parts(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """Parts as OpenAI content parts: ``text``, ``image_url`` (a data URL), ``input_audio`` (wav or mp3)."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            out.append({"type": "image_url", "image_url": {"url": data_url(part)}})
        elif isinstance(part, Video):
            raise InvalidMediaError("OpenAI chat content has no video part: send frames as images instead")
        else:
            clip = part if part.mime_type in AUDIO_FORMATS else as_wav(part)
            out.append(
                {
                    "type": "input_audio",
                    "input_audio": {"data": b64(clip.data), "format": AUDIO_FORMATS[str(clip.mime_type)]},
                }
            )
    return out


def from_openai_parts(content: str | Iterable[dict[str, Any]]) -> list[Text | Image | Audio]:
    """OpenAI message content (a string or content parts) as SDK parts; image URLs must be data URLs."""
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Text | Image | Audio] = []
    mime_of = {v: k for k, v in AUDIO_FORMATS.items()}
    for block in content:
        kind = block_type(block)
        if kind == "text":
            parts.append(Text(block.get("text", "")))
        elif kind == "image_url":
            mime, data = from_data_url(block["image_url"]["url"])
            parts.append(Image.from_bytes(data, mime_type=mime))
        elif kind == "input_audio":
            audio = block["input_audio"]
            if audio.get("format") not in mime_of:
                raise InvalidMediaError(f"input_audio format must be wav or mp3, not {audio.get('format')!r}")
            parts.append(Audio.from_bytes(unb64(audio["data"]), mime_type=mime_of[audio["format"]]))
        else:
            raise InvalidMediaError(f"OpenAI content parts of type {kind!r} are not supported")
    return parts
