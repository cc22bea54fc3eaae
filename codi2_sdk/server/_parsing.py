"""Reading a request body into a :class:`~codi2_sdk._protocol.GenerateBody`, within the per-request limits.

:func:`parse_body` runs away from the event loop: in a worker thread for small bodies, in a worker process
for large ones (a large body's JSON and base64 hold the interpreter's lock for tens of milliseconds at a
time, which would stall every other client of the server). Its refusals are :class:`Refusal` (an error
code and a message), which crosses a process boundary intact.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Any

from .. import _media
from .._protocol import GenerateBody
from ..content import MEDIA_PARTS
from ..errors import Codi2Error, InvalidRequestError, error_code_of

__all__ = ["LONG_STRING", "BodyLimits", "Refusal", "parse_body", "split_long_strings"]

LONG_STRING = 64 * 1024
"""String literals longer than this (in bytes) are cut out of a body before its JSON is parsed."""
MAX_STRINGS = 1_000_000
"""Most quote characters in one body: far beyond any conversation, and it bounds the scan's work."""


class Refusal(Exception):
    """A body refused with an error code (a key of :data:`~codi2_sdk.errors.ERROR_CODES`) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class BodyLimits:
    """What one request may carry, beyond each medium's own limits."""

    max_media_parts: int
    max_request_pixels: int
    max_request_audio_seconds: float
    max_parts: int = 1024


def split_long_strings(raw: bytes | bytearray) -> tuple[bytes, str, list[tuple[int, int]]]:
    """Cut every string literal longer than :data:`LONG_STRING` out of the JSON text ``raw``.

    Returns the rest (each cut string replaced by a placeholder string ``"<marker>N"``), the marker (random,
    so no string a client sends can pass for one), and the ``(start, end)`` byte span of each cut string's
    content. Raises :class:`Refusal` for a string that never ends or a body with too many strings.
    """
    if raw.count(b'"') > MAX_STRINGS:
        raise Refusal("invalid_schema", f"the body has over {MAX_STRINGS:,} quote characters")
    marker = f"\\u0000{secrets.token_hex(8)}:"  # as JSON text: a NUL and a nonce
    pieces: list[bytes | bytearray] = []
    spans: list[tuple[int, int]] = []
    done = position = 0
    while (start := raw.find(b'"', position)) >= 0:
        end = start
        while True:  # the closing quote: one not escaped by an odd number of backslashes
            end = raw.find(b'"', end + 1)
            if end < 0:
                raise Refusal("invalid_schema", "the body is not valid JSON: a string never ends")
            backslashes = 0
            while raw[end - 1 - backslashes] == 0x5C:
                backslashes += 1
            if backslashes % 2 == 0:
                break
        if end - start - 1 > LONG_STRING:
            pieces += [raw[done:start], f'"{marker}{len(spans)}"'.encode()]
            spans.append((start + 1, end))
            done = end + 1
        position = end + 1
    pieces.append(raw[done:])
    return b"".join(pieces), json.loads(f'"{marker}"'), spans


def _decode_base64(text: bytes | bytearray) -> bytes:
    """Strict base64 in 1 MiB slices: checking a whole 16 MiB string at once holds the lock for 70 ms."""
    padding = text.find(b"=")
    try:
        if 0 <= padding < len(text) - 2:
            raise binascii.Error("padding inside the data")
        step = 1 << 20
        return b"".join(base64.b64decode(text[i : i + step], validate=True) for i in range(0, len(text), step))
    except (binascii.Error, ValueError):
        raise Refusal("invalid_schema", "media data must be base64 text") from None


def _restore(node: Any, raw: bytes | bytearray, marker: str, spans: list[tuple[int, int]], key: str = "") -> Any:
    """Put the cut strings back into a parsed body: media ``data`` as bytes, anything else as text."""
    if isinstance(node, dict):
        restored = {}
        for k, v in node.items():
            k = _restore(k, raw, marker, spans)
            restored[k] = _restore(v, raw, marker, spans, k)
        return restored
    if isinstance(node, list):
        return [_restore(v, raw, marker, spans) for v in node]
    if not (isinstance(node, str) and node.startswith(marker)):
        return node
    start, end = spans[int(node[len(marker) :])]
    content = raw[start:end]
    if key == "data" and b"\\" not in content:
        return _decode_base64(content)
    return json.loads(bytes(raw[start - 1 : end + 1]))


def _part_lists(body: Any) -> list[list[Any]]:
    """The lists of parts in a raw request body, wherever the protocol allows them (messages and examples)."""
    if not isinstance(body, dict):
        return []
    lists = [m.get("parts") for m in body.get("messages") or [] if isinstance(m, dict)]
    for example in body.get("examples") or []:
        if isinstance(example, dict):
            lists += [example.get("inputs"), example.get("outputs")]
    return [parts for parts in lists if isinstance(parts, list)]


def _media_parts(lists: list[list[Any]]) -> list[dict[str, Any]]:
    """The image, audio and video parts among those lists."""
    return [p for parts in lists for p in parts if isinstance(p, dict) and p.get("type") in MEDIA_PARTS]


def _check_totals(parts: list[dict[str, Any]], limits: BodyLimits) -> None:
    """Refuse a request by the number of its media and the pixels and seconds their headers claim, before
    any medium is decoded."""
    if len(parts) > limits.max_media_parts:
        raise Refusal(
            "media_too_large", f"the request has {len(parts)} media; the server takes at most {limits.max_media_parts}"
        )
    pixels, seconds = 0, 0.0
    for part in parts:
        data = part.get("data")
        if not isinstance(data, (str, bytes)):
            continue  # the schema check says what is wrong with it
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else data
            if part["type"] == "image":
                _, image = _media.image_header(raw)
                pixels += image.width * image.height
            elif part["type"] == "audio":
                audio = _media.audio_header(raw)
                seconds += audio.frames / audio.sample_rate
            # a video counts toward max_media_parts; its own limits (frames, frame size, length) are the
            # content part's, checked from its header as it is decoded
        except (binascii.Error, ValueError):
            continue
        except Codi2Error as exc:
            raise Refusal(error_code_of(exc), str(exc)) from None
    if pixels > limits.max_request_pixels:
        raise Refusal(
            "media_too_large",
            f"the request's images have {pixels:,} pixels in all; the server takes at most {limits.max_request_pixels:,}",
        )
    if seconds > limits.max_request_audio_seconds:
        raise Refusal(
            "media_too_large",
            f"the request's audio lasts {seconds:.1f} s in all; the server takes at most "
            f"{limits.max_request_audio_seconds:.0f} s",
        )


def parse_body(raw: bytes | bytearray, limits: BodyLimits) -> GenerateBody:
    """Validate a request body: JSON, then the number of parts and the per-request totals from the media headers, then the schema
    and every medium (decoded once).

    Raises:
        Refusal: with ``invalid_schema``, ``invalid_media``, ``media_too_large`` or ``invalid_request``.
    """
    try:
        rest, marker, spans = split_long_strings(raw)
        body = _restore(json.loads(rest), raw, marker, spans)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Refusal("invalid_schema", f"the body is not valid JSON: {str(exc)[:200]}") from None
    lists = _part_lists(body)
    count = sum(len(parts) for parts in lists)
    if count > limits.max_parts:  # refused before pydantic validates each one (100,000 parts take seconds)
        raise Refusal(
            "invalid_request", f"the request has {count:,} parts; the server takes at most {limits.max_parts:,}"
        )
    _check_totals(_media_parts(lists), limits)
    try:
        return GenerateBody.model_validate(body)
    except RecursionError:
        raise Refusal("invalid_schema", "the request is nested too deeply") from None
    except Codi2Error as exc:
        if isinstance(exc, InvalidRequestError) and getattr(exc, "errors", None) is not None:  # the schema's
            raise Refusal("invalid_schema", f"the request does not match the protocol: {exc}") from None
        raise Refusal(error_code_of(exc), str(exc)) from None
