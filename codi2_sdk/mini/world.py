"""The procedural world of codi2-mini: pictures, sounds, their words, and the mapping between them.

Pictures are 64 x 64 RGB: one object on a white background, with a shape (4), a colour (6), a size (2)
and a position (3): 144 items. Sounds are one-second 16 kHz clips of beeps, with a note (8), a timbre
(3) and a beep count (1 to 3): 72 items. Renders carry small random jitter (position, size, colour,
pitch, timing), so no two are identical.

The fixed picture-to-sound mapping (documented in docs/mini.md):

- colour -> note: red do, yellow re, green mi, cyan fa, blue sol, magenta la;
- position -> beeps: left one, center two, right three;
- shape -> timbre: circle sine, square square, triangle sawtooth, diamond square.

And back (sound-to-picture): note -> colour (for the six notes that have one), beeps -> position,
timbre -> shape (sine circle, square square, sawtooth triangle); the picture is large.

Subjects (for subject-driven generation): an object with a dark mark painted on it (stripes one of three ways,
a checker, a spot or a ring), scaled with the object. A subject is its shape, colour and mark (144); no word
names a mark, so a subject can only be shown, never said.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import PIL.Image
import PIL.ImageDraw

__all__ = [
    "BEEPS",
    "COLOURS",
    "MARKS",
    "NOTES",
    "POSITIONS",
    "SAMPLE_RATE",
    "SHAPES",
    "SIZES",
    "TIMBRES",
    "Picture",
    "Sound",
    "Subject",
    "all_pictures",
    "all_sounds",
    "all_subjects",
    "picture_to_sound",
    "render_picture",
    "render_sound",
    "sound_to_picture",
]

IMAGE_SIZE = 64
SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (225, 195, 25),
    "green": (40, 165, 60),
    "cyan": (30, 185, 200),
    "blue": (40, 70, 225),
    "magenta": (200, 50, 190),
}
SIZES: dict[str, float] = {"small": 8.0, "large": 15.0}  # radius in pixels
POSITIONS: dict[str, float] = {"left": 16.0, "center": 32.0, "right": 48.0}  # x of the centre

NOTES: dict[str, float] = {
    "do": 261.63,
    "re": 293.66,
    "mi": 329.63,
    "fa": 349.23,
    "sol": 392.00,
    "la": 440.00,
    "si": 493.88,
    "doh": 523.25,
}
MARKS = ("hstripes", "vstripes", "dstripes", "checker", "spot", "ring")
"""The marks a subject can carry (internal names: no word of the vocabulary)."""
MARK_INK = 0.4
"""A mark is the object's own colour at this brightness."""

TIMBRES = ("sine", "square", "sawtooth")
BEEPS = (1, 2, 3)
BEEP_WORDS = {1: "one", 2: "two", 3: "three"}

COLOUR_TO_NOTE = dict(zip(COLOURS, NOTES, strict=False))
POSITION_TO_BEEPS = {"left": 1, "center": 2, "right": 3}
SHAPE_TO_TIMBRE = {"circle": "sine", "square": "square", "triangle": "sawtooth", "diamond": "square"}
TIMBRE_TO_SHAPE = {"sine": "circle", "square": "square", "sawtooth": "triangle"}


@dataclass(frozen=True, order=True)
class Picture:
    """The attributes of one picture."""

    shape: str
    colour: str
    size: str
    position: str
    mark: str = ""
    """A subject's mark (one of :data:`MARKS`), or ``""`` for a plain object. Descriptions never say it."""

    def describe(self) -> str:
        """``"a large red circle on the left"``."""
        where = "in the center" if self.position == "center" else f"on the {self.position}"
        return f"a {self.size} {self.colour} {self.shape} {where}"

    def with_(self, attribute: str, value: str) -> Picture:
        return replace(self, **{attribute: value})

    @property
    def subject(self) -> Subject | None:
        """The subject this picture shows, if it is marked."""
        return Subject(self.shape, self.colour, self.mark) if self.mark else None


@dataclass(frozen=True, order=True)
class Subject:
    """One object with its own look (shape, colour, mark), to be drawn anywhere and at any size."""

    shape: str
    colour: str
    mark: str

    def at(self, size: str, position: str) -> Picture:
        """This subject as a picture of the given size and position."""
        return Picture(self.shape, self.colour, size, position, self.mark)


@dataclass(frozen=True, order=True)
class Sound:
    """The attributes of one sound."""

    note: str
    timbre: str
    beeps: int

    def describe(self) -> str:
        """``"two sine beeps at mi"``."""
        noun = "beep" if self.beeps == 1 else "beeps"
        return f"{BEEP_WORDS[self.beeps]} {self.timbre} {noun} at {self.note}"

    def with_(self, attribute: str, value: str | int) -> Sound:
        return replace(self, **{attribute: value})  # type: ignore[arg-type]


PICTURE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
}
SOUND_ATTRIBUTES: dict[str, tuple[str | int, ...]] = {"note": tuple(NOTES), "timbre": TIMBRES, "beeps": BEEPS}


def all_pictures() -> list[Picture]:
    """Every picture item (144)."""
    return [Picture(*combo) for combo in itertools.product(*PICTURE_ATTRIBUTES.values())]


def all_subjects() -> list[Subject]:
    """Every subject (144)."""
    return [Subject(*combo) for combo in itertools.product(SHAPES, COLOURS, MARKS)]


def all_sounds() -> list[Sound]:
    """Every sound item (72)."""
    return [Sound(*combo) for combo in itertools.product(NOTES, TIMBRES, BEEPS)]  # type: ignore[arg-type]


def picture_to_sound(picture: Picture) -> Sound:
    """The sound of a picture."""
    return Sound(COLOUR_TO_NOTE[picture.colour], SHAPE_TO_TIMBRE[picture.shape], POSITION_TO_BEEPS[picture.position])


def sound_to_picture(sound: Sound) -> Picture | None:
    """The picture of a sound; ``None`` for the two notes without a colour."""
    colours = {v: k for k, v in COLOUR_TO_NOTE.items()}
    positions = {v: k for k, v in POSITION_TO_BEEPS.items()}
    if sound.note not in colours:
        return None
    return Picture(TIMBRE_TO_SHAPE[sound.timbre], colours[sound.note], "large", positions[sound.beeps])


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """The outline of a shape of radius ``r`` at ``(cx, cy)``; ``None`` for a circle."""
    if shape == "square":
        h = 0.8 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.75 * r), (cx - r, cy + 0.75 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return None


def mark_mask(mark: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Where a mark's ink lies, ``(size, size)`` booleans, in the object's own frame (it scales with it)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    u, v = (x - cx) / r, (y - cy) / r
    band = 0.42  # stripe and checker period, in radii
    if mark == "hstripes":
        return np.floor(v / band) % 2 == 0
    if mark == "vstripes":
        return np.floor(u / band) % 2 == 0
    if mark == "dstripes":
        return np.floor((u + v) / (band * 1.4)) % 2 == 0
    if mark == "checker":
        return (np.floor(u / band) + np.floor(v / band)) % 2 == 0
    if mark == "spot":
        return u**2 + v**2 < 0.42**2
    if mark == "ring":
        return (u**2 + v**2 > 0.3**2) & (u**2 + v**2 < 0.55**2)
    raise ValueError(f"unknown mark {mark!r}")


def draw_shape(
    shape: str,
    cx: float,
    cy: float,
    r: float,
    colour: tuple[int, int, int],
    *,
    mark: str = "",
    size: int = IMAGE_SIZE,
    scale: int = 4,
) -> PIL.Image.Image:
    """Draw one shape (with its mark, if any) on white, anti-aliased by drawing at ``scale`` times and
    box-downsampling."""
    big = PIL.Image.new("RGB", (size * scale, size * scale), "white")
    draw = PIL.ImageDraw.Draw(big)
    polygon = shape_polygon(shape, cx * scale, cy * scale, r * scale)
    if polygon is None:
        draw.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=colour)
    else:
        draw.polygon(polygon, fill=colour)
    if mark:
        ink = mark_mask(mark, cx * scale, cy * scale, r * scale, size * scale)
        inside = np.asarray(big).min(axis=-1) < 255
        pixels = np.asarray(big).copy()
        pixels[ink & inside] = np.asarray(colour, dtype=np.float64) * MARK_INK
        big = PIL.Image.fromarray(pixels)
    return big.resize((size, size), PIL.Image.Resampling.BOX)


def render_picture(
    picture: Picture, rng: np.random.Generator | None = None, *, rgb: tuple[int, int, int] | None = None
) -> PIL.Image.Image:
    """Render a picture with small jitter (position +-1.5 px, radius +-0.75 px, colour +-10 per channel); ``rgb``
    paints it in that colour instead of its named one (training's off-palette pictures)."""
    rng = rng or np.random.default_rng()
    cx = POSITIONS[picture.position] + rng.uniform(-1.5, 1.5)
    cy = 32.0 + rng.uniform(-1.5, 1.5)
    r = SIZES[picture.size] + rng.uniform(-0.75, 0.75)
    colour = tuple(int(np.clip(c + rng.integers(-10, 11), 0, 255)) for c in rgb or COLOURS[picture.colour])
    return draw_shape(picture.shape, cx, cy, r, colour, mark=picture.mark)  # type: ignore[arg-type]


def _wave(timbre: str, phase: np.ndarray) -> np.ndarray:
    if timbre == "sine":
        return np.sin(phase)
    if timbre == "square":
        return np.sign(np.sin(phase))
    return 2.0 * ((phase / (2 * np.pi)) % 1.0) - 1.0  # sawtooth


def render_sound(sound: Sound, rng: np.random.Generator | None = None) -> np.ndarray:
    """Render one second of 16 kHz audio: ``beeps`` beeps of 0.18 s, 0.1 s apart, with timing and pitch jitter."""
    rng = rng or np.random.default_rng()
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    freq = NOTES[sound.note] * (1 + rng.uniform(-0.004, 0.004))
    length = int(0.18 * SAMPLE_RATE)
    fade = int(0.008 * SAMPLE_RATE)
    envelope = np.ones(length)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[-fade:] = np.linspace(1, 0, fade)
    start = int(rng.uniform(0.04, 0.12) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    amplitude = 0.45 if sound.timbre == "sine" else 0.3
    for i in range(sound.beeps):
        at = start + i * int(0.28 * SAMPLE_RATE)
        out[at : at + length] += amplitude * envelope * _wave(sound.timbre, 2 * np.pi * freq * t + rng.uniform(0, 6.28))
    return out


Kind = Literal["picture", "sound"]
