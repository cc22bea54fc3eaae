#!/usr/bin/env python
"""The decoders' speed-ups on CPU: a medium's turn with the UNets plain, in channels-last layout, and compiled.

    python tools/bench/decoder_speed.py [--model codi2-mini] [--repeats 3] [--threads 2]

For each medium the model writes, seconds per ``Conversation`` turn that makes it (a fixed seed, the model's
default steps) with ``LocalBackend(model)``, ``LocalBackend(model, channels_last=True)`` and
``LocalBackend(model, compile_decoders=True)`` (its warm-up turn compiles, outside the timing), and the ratios
plain / channels-last and plain / compiled (above 1: faster). ``--model twin`` times the full-scale twin's
diffusers pipelines instead. Interleaved, median of ``--repeats``. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from _compare import interleaved_medians

from codi2_sdk import Conversation
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import CoDi2Model
from codi2_sdk.testing.twins import full_scale_twin

PROMPT = {
    "image": "draw a large red circle on the left.",
    "audio": "play two sine beeps at mi.",
    "video": "show a small red circle moving to the right.",
}


def _turn_seconds(backend: LocalBackend, modality: str) -> float:
    config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 8}}
    began = time.perf_counter()
    Conversation(backend=backend, config=config).send(PROMPT[modality])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini", help="a checkpoint, or 'twin' for the full-scale twin")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def load() -> CoDi2Model:
        return full_scale_twin() if args.model == "twin" else CoDi2Model.from_pretrained(args.model)

    backends = {
        "plain": LocalBackend(load()),
        "channels-last": LocalBackend(load(), channels_last=True),
        "compiled": LocalBackend(load(), compile_decoders=True),
    }
    print(f"{args.model}, {args.threads} thread(s), median of {args.repeats}, seconds per turn")
    for modality in backends["plain"].model.decoders:
        runs = {name: (lambda b=backend, m=modality: _turn_seconds(b, m)) for name, backend in backends.items()}
        s = interleaved_medians(runs, args.repeats)
        print(
            f"{modality:6}: plain {s['plain']:6.2f} s, channels-last {s['channels-last']:6.2f} s, "
            f"compiled {s['compiled']:6.2f} s; plain / channels-last {s['plain'] / s['channels-last']:.2f}x, "
            f"plain / compiled {s['plain'] / s['compiled']:.2f}x"
        )


if __name__ == "__main__":
    main()
