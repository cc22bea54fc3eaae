#!/usr/bin/env python
"""Latency of a conversation's turn 10 over turn 1, with the backend's caches on and off, in one run.

    python tools/bench/multi_turn.py [--model codi2-mini] [--turns 10] [--repeats 3]

Text turns ask about the picture of turn 1 ("what is this?"), so each prompt is the whole history plus a
short question; image turns ask for an instructed edit of the last picture (each answer is a new picture the
next turn reads). Each conversation is played ``--repeats`` times with a fixed seed and the median time of
each turn kept; the ratio turn N / turn 1 says how much the history costs. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from codi2_sdk import Conversation, Image
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.world import Picture, render_picture
from codi2_sdk.model import CoDi2Model

EDITS = ["make it blue.", "make it small.", "move it to the right.", "make it red.", "make it large."]


def conversation(backend: LocalBackend, turns: int, kind: str) -> list[float]:
    picture = Image.from_pil(render_picture(Picture("square", "green", "large", "left"), np.random.default_rng(0)))
    conv = Conversation(backend=backend, config={"seed": 0, "output_modality": "text" if kind == "text" else "image"})
    times = []
    for turn in range(turns):
        words = "what is this?" if kind == "text" else EDITS[turn % len(EDITS)]
        parts = (picture, words) if turn == 0 else (words,)
        began = time.perf_counter()
        conv.send(*parts)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = CoDi2Model.from_pretrained(args.model)
    print(f"model {args.model}; {args.turns} turns, median of {args.repeats} plays; ratio = turn {args.turns} / turn 1")
    for kind in ("text", "image"):
        for label, backend in (
            ("caches on", LocalBackend(model)),
            ("caches off", LocalBackend(model, cache_mb=0, media_cache_items=0)),
        ):
            plays = [conversation(backend, args.turns, kind) for _ in range(args.repeats)]
            medians = [statistics.median(t[i] for t in plays) for i in range(args.turns)]
            print(
                f"{kind:5} turns, {label:10}: turn 1 {medians[0] * 1000:6.0f} ms, turn {args.turns} "
                f"{medians[-1] * 1000:6.0f} ms, ratio {medians[-1] / medians[0]:.2f}"
            )


if __name__ == "__main__":
    main()
