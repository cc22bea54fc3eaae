"""Probes: deterministic analysers that read a picture's or a sound's attributes back.

They score every generated medium in the evaluation and in the tests (>= 99% right on clean renders).

- picture: the object is every pixel far from white; its colour is the mean of its most saturated half,
  matched to the nearest palette entry; its position is the bounding box's centre; its size is the box's
  width; its shape is the ideal outline (fitted to the box) with the best overlap.
- sound: beeps are the runs of a frame-energy envelope above a third of its peak; the note is the
  spectral peak between 230 and 560 Hz matched on a log scale; the timbre is read off the 2nd and 3rd
  harmonics' strength (sine: neither, square: odd only, sawtooth: both).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw

from .world import COLOURS, NOTES, POSITIONS, SAMPLE_RATE, SHAPES, Picture, Sound, shape_polygon

__all__ = ["probe_picture", "probe_sound"]

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


def _ideal_mask(shape: str, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2
    w, h = (x1 - x0 + 1), (y1 - y0 + 1)
    scale = 4
    img = PIL.Image.new("L", (size * scale, size * scale), 0)
    draw = PIL.ImageDraw.Draw(img)
    polygon = shape_polygon(shape, 0.0, 0.0, 1.0)
    if polygon is None:
        draw.ellipse([(cx - w / 2) * scale, (cy - h / 2) * scale, (cx + w / 2) * scale, (cy + h / 2) * scale], fill=255)
    else:
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        px0, px1, py0, py1 = min(xs), max(xs), min(ys), max(ys)
        fitted = [
            ((x0 + (x - px0) / (px1 - px0) * w) * scale, (y0 + (y - py0) / (py1 - py0) * h) * scale) for x, y in polygon
        ]
        draw.polygon(fitted, fill=255)
    return np.asarray(img.resize((size, size), PIL.Image.Resampling.BOX), dtype=np.float32) / 255.0


def probe_picture(image: PIL.Image.Image | np.ndarray) -> Picture | None:
    """Read a picture's attributes; ``None`` if no object is found."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, PIL.Image.Image) else image, dtype=np.float32)
    size = pixels.shape[0]
    distance = np.linalg.norm(255.0 - pixels, axis=-1)
    coverage = np.clip(distance / 120.0, 0.0, 1.0)  # soft object mask (anti-aliased edges are partial)
    mask = coverage > 0.5
    if mask.sum() < 6:
        return None
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))

    object_pixels = pixels[mask]
    saturation = object_pixels.max(axis=1) - object_pixels.min(axis=1)
    vivid = object_pixels[saturation >= np.median(saturation)]
    colour = list(COLOURS)[int(np.argmin(np.linalg.norm(_PALETTE - vivid.mean(axis=0), axis=1)))]

    centre_x = (box[0] + box[2] + 1) / 2 * 64 / size
    position = min(POSITIONS, key=lambda p: abs(POSITIONS[p] - centre_x))
    width = (box[2] - box[0] + 1) * 64 / size
    size_name = "small" if width < 21.0 else "large"

    def overlap(shape: str) -> float:
        ideal = _ideal_mask(shape, box, size)
        return float(np.minimum(ideal, coverage).sum() / np.maximum(ideal, coverage).sum())

    shape = max(SHAPES, key=overlap)
    return Picture(shape, colour, size_name, position)


def _beep_runs(wave: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    frame = sample_rate // 100  # 10 ms
    n = len(wave) // frame
    energy = np.sqrt((wave[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    if energy.max() < 1e-3:
        return []
    active = energy > energy.max() / 3
    runs: list[list[int]] = []
    for i, on in enumerate(active):
        if not on:
            continue
        if runs and i - runs[-1][1] <= 3:  # gaps up to 30 ms are part of one beep
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(a * frame, (b + 1) * frame) for a, b in runs if b - a + 1 >= 4]  # at least 40 ms


def probe_sound(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Sound | None:
    """Read a sound's attributes from mono samples; ``None`` if no beep is found."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    runs = _beep_runs(wave, sample_rate)
    if not runs or len(runs) > 3:
        return None
    voiced = np.concatenate([wave[a:b] for a, b in runs])
    spectrum = np.abs(np.fft.rfft(voiced * np.hanning(len(voiced)), n=1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1 / sample_rate)
    power = spectrum**2
    band = (freqs > 230) & (freqs < 560)
    peak = float(freqs[band][np.argmax(power[band])])
    # refine the peak by the power centroid around it: robust to spectra smoothed by a mel inversion
    near = np.abs(freqs - peak) < 0.05 * peak
    f0 = float((freqs[near] * power[near]).sum() / power[near].sum())
    note = min(NOTES, key=lambda n: abs(np.log(NOTES[n] / f0)))

    def energy(multiple: int) -> float:
        return float(power[np.abs(freqs - multiple * f0) < 0.05 * multiple * f0].sum())

    fundamental = energy(1)
    second, third = np.sqrt(energy(2) / fundamental), np.sqrt(energy(3) / fundamental)
    if third < 0.12 and second < 0.12:
        timbre = "sine"
    elif second < 0.5 * third:
        timbre = "square"
    else:
        timbre = "sawtooth"
    return Sound(note, timbre, len(runs))
