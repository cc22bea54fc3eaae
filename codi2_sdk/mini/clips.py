"""Video in codi2-mini's world: short clips of one item moving, rendered exactly, and a probe that reads them.

A clip is 8 frames of 64 x 64 at 4 fps of one shape in one colour, with a motion:

- ``rightward`` / ``leftward``: from the left edge's position to the right's (or back), size kept;
- ``growing`` / ``shrinking``: in the center, from small to large (or back).

Renders carry the pictures' jitter (fixed for the whole clip), so no two are identical. :func:`probe_clip`
reads shape, colour, size and motion back from the frames (first and last frames through the picture probe),
so every clip answer can be scored, as pictures and sounds are.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

from .probes import probe_picture
from .world import COLOURS, POSITIONS, SHAPES, SIZES, draw_shape

__all__ = ["CLIP_ATTRIBUTES", "CLIP_FPS", "CLIP_FRAMES", "MOTIONS", "Clip", "all_clips", "probe_clip", "render_clip"]

CLIP_FRAMES = 8
CLIP_FPS = 4.0
MOTIONS = ("rightward", "leftward", "growing", "shrinking")
_REVERSED = {"rightward": "leftward", "leftward": "rightward", "growing": "shrinking", "shrinking": "growing"}


@dataclass(frozen=True, order=True)
class Clip:
    """The attributes of one clip: its item and how it moves (``size`` is the starting size)."""

    shape: str
    colour: str
    size: str
    motion: str

    def describe(self) -> str:
        """``"a large red circle moving to the right"`` or ``"a red circle growing"``."""
        if self.motion in ("rightward", "leftward"):
            way = "right" if self.motion == "rightward" else "left"
            return f"a {self.size} {self.colour} {self.shape} moving to the {way}"
        return f"a {self.colour} {self.shape} {self.motion}"

    def with_(self, attribute: str, value: str) -> Clip:
        return replace(self, **{attribute: value})

    def reversed(self) -> Clip:
        """The clip played the other way (a growing clip starts large when it shrinks)."""
        motion = _REVERSED[self.motion]
        size = {"growing": "small", "shrinking": "large"}.get(motion, self.size)
        return replace(self, motion=motion, size=size)


CLIP_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "motion": MOTIONS,
}


def all_clips() -> list[Clip]:
    """Every clip item (144): moves at either size, size changes from their starting size."""
    moves = [Clip(s, c, z, m) for s, c, z, m in itertools.product(SHAPES, COLOURS, SIZES, ("rightward", "leftward"))]
    changes = [Clip(s, c, "small", "growing") for s, c in itertools.product(SHAPES, COLOURS)]
    changes += [Clip(s, c, "large", "shrinking") for s, c in itertools.product(SHAPES, COLOURS)]
    return moves + changes


def render_clip(clip: Clip, rng: np.random.Generator | None = None) -> np.ndarray:
    """The clip's frames, ``(8, 64, 64, 3)`` uint8 RGB, with one jitter for the whole clip."""
    rng = rng or np.random.default_rng()
    dx, cy, dr = rng.uniform(-1.5, 1.5), 32.0 + rng.uniform(-1.5, 1.5), rng.uniform(-0.75, 0.75)
    colour = tuple(int(np.clip(c + rng.integers(-10, 11), 0, 255)) for c in COLOURS[clip.colour])
    left, right, small, large = POSITIONS["left"], POSITIONS["right"], SIZES["small"], SIZES["large"]
    frames = []
    for t in np.linspace(0.0, 1.0, CLIP_FRAMES):
        cx, r = POSITIONS["center"], SIZES[clip.size]
        if clip.motion == "rightward":
            cx = left + (right - left) * t
        elif clip.motion == "leftward":
            cx = right - (right - left) * t
        elif clip.motion == "growing":
            r = small + (large - small) * t
        else:
            r = large - (large - small) * t
        frames.append(np.asarray(draw_shape(clip.shape, cx + dx, cy, r + dr, colour)))  # type: ignore[arg-type]
    return np.stack(frames)


def probe_clip(frames: np.ndarray) -> Clip | None:
    """Read a clip's item and motion from its frames; ``None`` when the first or last frame cannot be read, or
    they do not make one of the motions."""
    first, last = probe_picture(frames[0]), probe_picture(frames[-1])
    if first is None or last is None or (first.shape, first.colour) != (last.shape, last.colour):
        return None
    if first.size == last.size and (first.position, last.position) == ("left", "right"):
        return Clip(first.shape, first.colour, first.size, "rightward")
    if first.size == last.size and (first.position, last.position) == ("right", "left"):
        return Clip(first.shape, first.colour, first.size, "leftward")
    if first.position == last.position == "center" and (first.size, last.size) == ("small", "large"):
        return Clip(first.shape, first.colour, "small", "growing")
    if first.position == last.position == "center" and (first.size, last.size) == ("large", "small"):
        return Clip(first.shape, first.colour, "large", "shrinking")
    return None
