"""Rich display in notebooks (Jupyter, VS Code): media as pictures and players, messages and conversations as
HTML. The content, message and conversation classes call these from their ``_repr_*_`` methods."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

__all__ = ["conversation_html", "message_html", "part_html"]


def _data_uri(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def part_html(part: Any) -> str:
    """One part as HTML: text escaped, a picture, or an audio or video player (the bytes inline)."""
    if part.type == "text":
        return f'<span style="white-space: pre-wrap">{html.escape(part.text)}</span>'
    uri = _data_uri(part.mime_type, part.data)
    if part.type == "image" or (part.type == "video" and part.mime_type.startswith("image/")):
        return f'<img src="{uri}" style="max-width: 256px; image-rendering: pixelated" alt="{part.type}">'
    tag = "audio" if part.type == "audio" else "video"
    return f'<{tag} controls src="{uri}" style="max-width: 320px"></{tag}>'


def _parts_html(parts: Sequence[Any]) -> str:
    return " ".join(part_html(p) for p in parts)


def message_html(message: Any) -> str:
    """A message as a labelled row of its parts."""
    return f'<div style="margin: 4px 0"><b>{html.escape(message.role)}</b>: {_parts_html(message.parts)}</div>'


def conversation_html(examples: Sequence[Any], messages: Sequence[Any]) -> str:
    """In-context examples (input -> output), then every message."""
    rows = [
        f'<div style="margin: 4px 0"><i>example</i>: {_parts_html(e.inputs)} &rarr; {_parts_html(e.outputs)}</div>'
        for e in examples
    ]
    rows += [message_html(m) for m in messages]
    return '<div class="codi2-conversation">' + "".join(rows) + "</div>"
