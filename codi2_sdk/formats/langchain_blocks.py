"""SDK parts <-> LangChain v1 standard content blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..content import MEDIA_PARTS, Image, Part, Provenance, Text
from ..errors import InvalidMediaError
from ._common import b64, block_type, from_data_url, unb64

__all__ = ["from_langchain_blocks", "to_langchain_blocks"]

PROVENANCE_KEY = "codi2_provenance"
"""Key in a block's ``extras`` that carries the medium's :class:`~codi2_sdk.content.Provenance`."""


def to_langchain_blocks(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """Parts as v1 content blocks: ``text``, ``image``, ``audio`` and ``video`` with ``base64`` and ``mime_type``
    (and the provenance of generated media in ``extras``)."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            blocks.append({"type": "text", "text": part.text})
        else:
            block: dict[str, Any] = {"type": part.type, "base64": b64(part.data), "mime_type": part.mime_type}
            if part.provenance is not None:
                block["extras"] = {PROVENANCE_KEY: part.provenance.model_dump(mode="json")}
            blocks.append(block)
    return blocks


def from_langchain_blocks(content: str | Iterable[str | dict[str, Any]]) -> list[Part]:
    """A message's content (a string, or v1 blocks; ``image_url`` data URLs too) as parts.

    Remote URLs are refused: the SDK never fetches media from the network.
    """
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for block in content:
        kind = block_type(block)
        if isinstance(block, str):
            parts.append(Text(block))
        elif kind == "text":
            parts.append(Text(block.get("text", "")))
        elif kind in MEDIA_PARTS:
            if "base64" in block:
                data, mime = unb64(block["base64"]), block.get("mime_type")
            elif "url" in block and str(block["url"]).startswith("data:"):
                mime, data = from_data_url(block["url"])
            else:
                raise InvalidMediaError(f"{kind} blocks need inline base64 data (URLs and file ids are not fetched)")
            extras = block.get("extras") or {}
            provenance = Provenance.model_validate(extras[PROVENANCE_KEY]) if PROVENANCE_KEY in extras else None
            parts.append(MEDIA_PARTS[kind](data=data, mime_type=mime, provenance=provenance))  # type: ignore[index]
        elif kind == "image_url":
            url = block["image_url"]["url"] if isinstance(block.get("image_url"), dict) else block.get("image_url", "")
            mime, data = from_data_url(str(url))
            parts.append(Image.from_bytes(data, mime_type=mime))
        else:
            raise InvalidMediaError(f"content blocks of type {kind!r} are not supported")
    return parts
