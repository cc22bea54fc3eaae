"""SDK parts <-> MCP (Model Context Protocol) content: text, pictures as PNG and sounds as WAV (MCP's image and
audio content), and videos as embedded resources (MCP has no video content: a ``resource`` item whose blob is the
MP4 or WebM, with its MIME type)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..content import MEDIA_PARTS, Audio, Image, Part, Text, Video, picture_or_clip
from ..errors import InvalidMediaError
from ._common import as_png, as_wav, b64, block_type, unb64

__all__ = ["from_mcp_content", "to_mcp_content"]


def to_mcp_content(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """Parts as MCP content items; images are sent as PNG and audio as WAV (re-encoded if need be), videos as
    they are, in an embedded resource named ``codi2://media/<sha256>``."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, Image):
            out.append({"type": "image", "data": b64(as_png(part).data), "mimeType": "image/png"})
        elif isinstance(part, Video):
            blob = {"uri": f"codi2://media/{part.sha256}", "mimeType": part.mime_type, "blob": b64(part.data)}
            out.append({"type": "resource", "resource": blob})
        else:
            out.append({"type": "audio", "data": b64(as_wav(part).data), "mimeType": "audio/wav"})
    return out


def from_mcp_content(content: Iterable[Any]) -> list[Text | Image | Audio | Video]:
    """MCP content items as SDK parts: dicts, or the objects an ``mcp`` client session returns; an embedded
    resource becomes the medium its blob's MIME type names."""
    parts: list[Text | Image | Audio | Video] = []
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
        elif kind == "resource" and isinstance(item.get("resource"), dict) and "blob" in item["resource"]:
            parts.append(_from_blob(item["resource"]))
        else:
            raise InvalidMediaError(f"MCP content of type {kind!r} is not supported")
    return parts


def _from_blob(resource: dict[str, Any]) -> Image | Audio | Video:
    mime = str(resource.get("mimeType") or "")
    kind = MEDIA_PARTS.get(mime.partition("/")[0])  # type: ignore[call-overload]
    if kind is None:
        raise InvalidMediaError(f"an MCP resource of type {mime or 'unknown'!r} is not an image, audio or video")
    part = kind.from_bytes(unb64(resource["blob"]), mime_type=mime)
    return picture_or_clip(part) if isinstance(part, Image) else part  # an animated GIF is a video's resource
