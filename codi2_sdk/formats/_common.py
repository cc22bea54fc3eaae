"""Helpers shared by the converters."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..content import Audio, Image
from ..errors import InvalidMediaError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMediaError("media data is not valid base64") from None


def data_url(part: Image | Audio) -> str:
    return f"data:{part.mime_type};base64,{b64(part.data)}"


def from_data_url(url: str) -> tuple[str | None, bytes]:
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidMediaError("only base64 data: URLs are accepted for media (remote URLs are never fetched)")
    return match["mime"], unb64(match["data"])


def as_png(image: Image) -> Image:
    return image if image.mime_type == "image/png" else Image.from_pil(image.to_pil(), provenance=image.provenance)


def as_wav(audio: Audio) -> Audio:
    if audio.mime_type == "audio/wav":
        return audio
    assert audio.sample_rate is not None
    return Audio.from_array(audio.to_numpy(), sample_rate=audio.sample_rate, provenance=audio.provenance)


def block_type(block: Any) -> str:
    if isinstance(block, str):
        return "text"
    if not isinstance(block, dict) or "type" not in block:
        raise InvalidMediaError(f"a content block must be a dict with a 'type', not {block!r:.80}")
    return str(block["type"])
