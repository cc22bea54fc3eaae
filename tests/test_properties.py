"""Property tests (hypothesis): for arbitrary bytes, strings and JSON, the SDK's parsers either succeed or
raise an error of its own tree, never anything else."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codi2_sdk import Audio, Codi2Error, Conversation, ConversationFileError, Image, MediaReferenceError, Video
from codi2_sdk.agents.store import MediaStore
from codi2_sdk.server._parsing import BodyLimits, Refusal, parse_body
from codi2_sdk.testing import fake_audio, fake_image

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PNG, WAV = fake_image(6, 4).data, fake_audio(0.05, sample_rate=8000).data
LIMITS = BodyLimits(max_media_parts=8, max_request_pixels=10**6, max_request_audio_seconds=60)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def corrupted(original: bytes) -> st.SearchStrategy[bytes]:
    """A valid file with some bytes changed, cut short, or padded: the inputs a decoder finds hardest."""
    edits = st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=8)
    return st.builds(
        lambda changes, cut, tail: bytes(dict(changes).get(i, b) for i, b in enumerate(original))[:cut] + tail,
        edits,
        st.integers(0, len(original)),
        st.binary(max_size=16),
    )


@BOUNDED
@given(st.binary(max_size=512) | corrupted(PNG) | corrupted(WAV))
def test_media_from_any_bytes_is_a_part_or_a_media_error(data: bytes) -> None:
    for make in (Image.from_bytes, Audio.from_bytes):
        with contextlib.suppress(Codi2Error):
            make(data)


@BOUNDED
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int16, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=64),
    ),
    st.integers(-10, 400_000),
)
def test_audio_from_any_array_is_a_clip_or_a_media_error(samples: np.ndarray, rate: int) -> None:
    with contextlib.suppress(Codi2Error):
        Audio.from_array(samples, sample_rate=rate)


def request_body(parts: list) -> dict:
    return {"messages": [{"role": "user", "parts": parts}], "stream": False}


@BOUNDED
@given(
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(json_values, max_size=3).map(lambda parts: json.dumps(request_body(parts)).encode())
    | corrupted(json.dumps(request_body([{"type": "text", "text": "hi"}])).encode())
)
def test_the_body_parser_refuses_with_a_code_and_nothing_else(raw: bytes) -> None:
    try:
        parse_body(raw, LIMITS)
    except Refusal as refusal:
        assert refusal.code in {"invalid_schema", "invalid_media", "media_too_large", "invalid_request"}


@BOUNDED
@given(st.lists(st.text(max_size=30), min_size=1, max_size=4), st.booleans())
def test_cut_out_strings_come_back_unchanged(monkeypatch, texts: list[str], ascii_only: bool) -> None:
    monkeypatch.setattr("codi2_sdk.server._parsing.LONG_STRING", 4)  # cut nearly every string
    parts = [{"type": "text", "text": t} for t in texts] + [{"type": "image", "data": PNG}]
    request = request_body(parts)
    raw = json.dumps(request, ensure_ascii=ascii_only, default=lambda b: __import__("base64").b64encode(b).decode())
    try:
        body = parse_body(raw.encode("utf-8", "surrogatepass"), LIMITS)
    except Refusal as refusal:  # only texts that are not valid Unicode may be refused
        assert refusal.code == "invalid_schema" and any(any(0xD800 <= ord(c) < 0xE000 for c in t) for t in texts)
        return
    assert [p.text for p in body.messages[0].parts[:-1]] == texts  # type: ignore[union-attr]
    assert body.messages[0].images[0].data == PNG


@BOUNDED
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_loading_any_file_is_a_conversation_or_a_file_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "conv.json"
    path.write_bytes(data)
    with contextlib.suppress(ConversationFileError):
        Conversation.load(path)
    assert path.read_bytes() == data


@BOUNDED
@given(st.text(max_size=300) | st.binary(max_size=100).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_reference_resolves_or_is_a_reference_error(tmp_path: Path, ref: str) -> None:
    (tmp_path / "ok.png").write_bytes(PNG)
    store = MediaStore(allowed_roots=[tmp_path])
    with contextlib.suppress(MediaReferenceError):
        store.get(ref)


@pytest.mark.parametrize("ref", ["a\x00b", "x" * 100_000, "/" + "y" * 300, "~nobody-here/x.png", "\udcff.png"])
def test_hostile_references_are_reference_errors(tmp_path: Path, ref: str) -> None:
    with pytest.raises(MediaReferenceError):
        MediaStore(allowed_roots=[tmp_path]).get(ref)


MP4 = Video.from_frames(np.zeros((3, 16, 16, 3), np.uint8), fps=3).data


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=512) | corrupted(MP4) | corrupted(PNG))
def test_video_from_any_bytes_is_a_clip_or_a_media_error(data: bytes) -> None:
    with contextlib.suppress(Codi2Error):
        Video.from_bytes(data)
