#!/usr/bin/env python
"""What the SDK adds on top of the model: ``Conversation.send`` time over the bare model call on the same inputs.

    python tools/bench/sdk_overhead.py [--model codi2-mini] [--repeats 20]

The bare call is ``codi2_sdk.model.generate_events(model, request)`` run to its end; the SDK call is
``Conversation(backend=LocalBackend(model)).send(...)`` for the same turn and seed, which adds validation,
the backend's lock and checks, the message history and events. Both run without the backend's caches (they
would make the SDK side faster, not show its overhead). Interleaved, median of ``--repeats``. Run it alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from codi2_sdk import Conversation, GenerationRequest, Image, user
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.world import Picture, render_picture
from codi2_sdk.model import CoDi2Model, generate_events

TURNS = {
    "describe a picture": ("what is this?", "text"),
    "draw a picture": ("draw a large red circle on the left.", "image"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = CoDi2Model.from_pretrained(args.model)
    backend = LocalBackend(model, cache_mb=0, media_cache_items=0)
    picture = Image.from_pil(render_picture(Picture("square", "green", "large", "left"), np.random.default_rng(0)))
    print(f"model {args.model}; median of {args.repeats}; ratio = Conversation.send / bare model call")
    for name, (words, modality) in TURNS.items():
        parts = (picture, words) if modality == "text" else (words,)
        config = {"seed": 0, "output_modality": modality}
        request = GenerationRequest(messages=[user(*parts)], config=config)
        bare, sdk = [], []
        for _ in range(args.repeats):
            began = time.perf_counter()
            for _event in generate_events(model, request):
                pass
            bare.append(time.perf_counter() - began)
            began = time.perf_counter()
            Conversation(backend=backend, config=config).send(*parts)
            sdk.append(time.perf_counter() - began)
        b, s = statistics.median(bare), statistics.median(sdk)
        print(f"{name:20}: bare {b * 1000:7.1f} ms, Conversation.send {s * 1000:7.1f} ms, ratio {s / b:.3f}")


if __name__ == "__main__":
    main()
