"""SDK parts <-> MCP (Model Context Protocol) content: text, and media as encoded PNG and WAV."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..content import Audio, Image, Part, Text, Video
from ..errors import InvalidMediaError
from ._common import as_png, as_wav, b64, block_type, unb64

__all__ = ["from_mcp_content", "to_mcp_content"]


def to_mcp_content(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """Parts as MCP content items; images are sent as PNG and audio as WAV (re-encoded if need be)."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            out.append({"type": "image", "data": b64(as_png(part).data), "mimeType": "image/png"})
        elif isinstance(part, Video):
            raise InvalidMediaError("MCP content has no video type: send frames as images instead")
        else:
            out.append({"type": "audio", "data": b64(as_wav(part).data), "mimeType": "audio/wav"})
    return out


def from_mcp_content(content: Iterable[Any]) -> list[Text | Image | Audio]:
    """MCP content items as SDK parts: dicts, or the objects an ``mcp`` client session returns."""
    parts: list[Text | Image | Audio] = []
    for item in content:
        if hasattr(item, "model_dump"):  # mcp.types.TextContent, ImageContent, AudioContent
            item = item.model_dump(by_alias=True)
        kind = block_type(item)
        if kind == "text":
            parts.append(Text(item.get("text", "")))
        elif kind == "image":
            parts.append(Image.from_bytes(unb64(item["data"]), mime_type=item.get("mimeType")))
        elif kind == "audio":
            parts.append(Audio.from_bytes(unb64(item["data"]), mime_type=item.get("mimeType")))
        else:
            raise InvalidMediaError(f"MCP content of type {kind!r} is not supported")
    return parts
