"""Shared by the benchmarks: several ways of doing one thing measured in turns, so a slow spell of the machine
falls on all of them alike."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def interleaved_medians(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Each run's median figure over ``repeats`` rounds; every round calls each run once, in order, after one
    warm-up call of each (which compiles, fills caches, loads lazily)."""
    for run in runs.values():
        run()
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            figures[name].append(run())
    return {name: statistics.median(values) for name, values in figures.items()}
