"""Answers compared by what they show and sound like, not by their bytes.

Another CPU's kernels, another thread count, a compiled or merged model round floats differently and move a decoded
medium's bytes without changing its content: compare texts exactly, pictures and video frames by PSNR, and audio by
the signal-to-noise ratio of its samples.

>>> from codi2_sdk import assistant
>>> from codi2_sdk.testing import answer_differences, fake_image
>>> answer_differences(assistant("a red circle", fake_image()), assistant("a red circle", fake_image()))
[]
>>> answer_differences(assistant("a red circle"), assistant("a blue square"))
["part 0: text 'a red circle', wanted 'a blue square'"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..content import Audio, Image, Part, Text, Video
from ..messages import Message, PartLike, to_parts

__all__ = ["answer_differences", "psnr", "snr"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit arrays, in dB (infinite when they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def snr(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-noise ratio of ``other`` to ``reference`` (audio samples), in dB (infinite when equal)."""
    noise = float(np.sum((reference.astype(np.float64) - other.astype(np.float64)) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise)


def _visual(part: Image | Video) -> np.ndarray:
    return np.asarray(part.to_pil()) if isinstance(part, Image) else part.to_frames()


def _part_difference(index: int, got: Part, want: Part, min_psnr_db: float, min_snr_db: float) -> str | None:
    if isinstance(got, Text) and isinstance(want, Text):
        return None if got.text == want.text else f"part {index}: text {got.text!r}, wanted {want.text!r}"
    if isinstance(got, (Image, Video)) and isinstance(want, (Image, Video)):
        a, b = _visual(got), _visual(want)
        if a.shape != b.shape:
            return f"part {index}: {got.type} of shape {a.shape}, wanted {b.shape}"
        value = psnr(a, b)
        return None if value >= min_psnr_db else f"part {index}: {got.type} at {value:.1f} dB PSNR (< {min_psnr_db})"
    assert isinstance(got, Audio) and isinstance(want, Audio)
    x, y = got.to_numpy(), want.to_numpy()
    if x.shape != y.shape or got.sample_rate != want.sample_rate:
        return f"part {index}: audio {x.shape} at {got.sample_rate} Hz, wanted {y.shape} at {want.sample_rate}"
    value = snr(y, x)
    return None if value >= min_snr_db else f"part {index}: audio at {value:.1f} dB SNR (< {min_snr_db})"


def answer_differences(
    answer: Message | Sequence[PartLike],
    wanted: Message | Sequence[PartLike],
    *,
    min_psnr_db: float = 35.0,
    min_snr_db: float = 35.0,
) -> list[str]:
    """What keeps ``answer`` from matching ``wanted`` (messages, or their parts; strings are text) by content, one
    line per part (empty when it matches).

    Texts must be equal; pictures and video frames of the same shape at least ``min_psnr_db`` PSNR apart; audio of
    the same length and rate at least ``min_snr_db`` SNR to ``wanted``'s samples. The defaults are the golden
    tests' (``tests/test_golden_outputs.py`` says what they were measured against).
    """
    got = answer.parts if isinstance(answer, Message) else to_parts(answer)
    want = wanted.parts if isinstance(wanted, Message) else to_parts(wanted)
    if [p.type for p in got] != [p.type for p in want]:
        return [f"parts {[p.type for p in got]}, wanted {[p.type for p in want]}"]
    found = (_part_difference(i, g, w, min_psnr_db, min_snr_db) for i, (g, w) in enumerate(zip(got, want, strict=True)))
    return [line for line in found if line is not None]
