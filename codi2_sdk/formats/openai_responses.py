"""SDK messages <-> the OpenAI Responses API's input items and output items.

Input: a string, or items ``{"role": ..., "content": ...}`` (``type: "message"`` optional) whose content is a
string or parts: ``input_text`` / ``output_text``, ``input_image`` (a data URL), ``input_audio``, and
``input_file`` with ``file_data`` as a data URL of a picture, a sound or a clip. Output: a text run is a ``message``
item with one ``output_text`` part, a picture an ``image_generation_call`` item (base64 PNG in ``result``), as
OpenAI's own image tool answers; a sound or a clip, which the Responses API has no item for, a ``codi2_media``
item (``media_type`` and base64 ``data``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from ..content import Audio, Image, Part, Text, Video
from ..errors import InvalidMediaError, InvalidRequestError
from ..messages import Message
from ._common import b64, from_data_url, unb64

__all__ = ["from_response_input", "new_id", "output_item"]

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (``resp_...``, ``msg_...``, ``ig_...``)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def _file(mime: str | None, data: bytes, where: str) -> Part:
    family = (mime or "").split("/")[0]
    if family == "image":
        return Image.from_bytes(data, mime_type=mime)
    if family == "audio":
        return Audio.from_bytes(data, mime_type=mime)
    if family == "video":
        return Video.from_bytes(data, mime_type=mime)
    raise InvalidMediaError(f"{where}: input_file must be a picture, a sound or a clip, not {mime or 'unknown'}")


def _parts(content: str | Iterable[Any], where: str) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(Text(str(block.get("text", ""))))
        elif kind == "input_image":
            url = block.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequestError(f"{where}.content[{i}]: send input_image as a data URL in image_url")
            mime, data = from_data_url(url)
            parts.append(Image.from_bytes(data, mime_type=mime))
        elif kind == "input_audio":
            audio = block.get("input_audio") or {}
            parts.append(Audio.from_bytes(unb64(str(audio.get("data", "")))))
        elif kind == "input_file":
            if not isinstance(block.get("file_data"), str):
                raise InvalidRequestError(f"{where}.content[{i}]: send input_file as a data URL in file_data")
            parts.append(_file(*from_data_url(block["file_data"]), f"{where}.content[{i}]"))
        else:
            raise InvalidMediaError(f"{where}.content[{i}]: content of type {kind!r} is not supported")
    return parts


def from_response_input(raw: Any) -> list[Message]:
    """The request's ``input`` (and earlier turns, as items) as messages."""
    if isinstance(raw, str):
        return [Message(role="user", parts=[Text(raw)])] if raw else []
    if not isinstance(raw, list):
        raise InvalidRequestError("input must be a string or a list of items")
    messages = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") not in _ROLES:
            raise InvalidRequestError(
                f"input[{i}] must be a message item with role user, assistant, system or developer"
            )
        messages.append(Message(role=_ROLES[item["role"]], parts=_parts(item.get("content") or "", f"input[{i}]")))
    return messages


def output_item(part: Part | list[Text], item_id: str) -> dict[str, Any]:
    """One output item, completed: a text run (a list of texts), a picture, a sound or a clip."""
    if isinstance(part, list):
        text = "".join(t.text for t in part)
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        return {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": content}
    if isinstance(part, Image):
        png = part if part.mime_type == "image/png" else Image.from_pil(part.to_pil())
        return {"type": "image_generation_call", "id": item_id, "status": "completed", "result": b64(png.data)}
    if isinstance(part, (Audio, Video)):
        return {"type": "codi2_media", "id": item_id, "status": "completed", "media_type": part.mime_type,
                "data": b64(part.data)}  # fmt: skip
    raise InvalidRequestError(f"no output item for a {type(part).__name__}")
