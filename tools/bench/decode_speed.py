#!/usr/bin/env python
"""Decode speed on CPU: the SDK's loop eager and compiled over a static cache, against a bare ``generate``.

    python tools/bench/decode_speed.py [--tokens 48] [--repeats 3] [--threads 2]

Two LLMs inside a CoDi-2 model: the full-scale twin's tiny Llama, and a random ~100 M-parameter Llama (768 wide,
12 layers, untied head) with the twin's tokenizer. For each, tokens per second of
``LocalBackend(model)`` (eager, dynamic cache), ``LocalBackend(model, compile=True)`` (one-token steps compiled
over a static cache; its first request compiles, outside the timing), and transformers' bare ``generate``
(greedy, dynamic cache) on the same prompt, with the ratios compiled / eager and SDK eager / bare. A text answer
of ``--tokens`` steps: the SDK's steps are counted as its token picks. Median of ``--repeats``. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from _compare import interleaved_medians
from _models import mid_model

from codi2_sdk import Conversation
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import CoDi2Model
from codi2_sdk.model import generation as generation_module
from codi2_sdk.testing.twins import full_scale_twin

PROMPT = "what is this ? draw a red circle ."


def _sdk_rate(backend: LocalBackend, tokens: int) -> float:
    picks = 0
    pick = generation_module.TokenPicker.pick

    def counting(self, logits, step):  # type: ignore[no-untyped-def]
        nonlocal picks
        picks += 1
        return pick(self, logits, step)

    generation_module.TokenPicker.pick = counting  # type: ignore[method-assign]
    try:
        config = {"seed": 0, "output_modality": "text", "text": {"max_new_tokens": tokens}}
        began = time.perf_counter()
        Conversation(backend=backend, config=config).send(PROMPT)
        return picks / (time.perf_counter() - began)
    finally:
        generation_module.TokenPicker.pick = pick  # type: ignore[method-assign]


def _bare_rate(model: CoDi2Model, tokens: int) -> float:
    ids = model.tokenizer(PROMPT, return_tensors="pt").input_ids
    began = time.perf_counter()
    with torch.no_grad():
        out = model.llm.generate(input_ids=ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - began)


def _report(name: str, build, tokens: int, repeats: int) -> None:  # type: ignore[no-untyped-def]
    eager, compiled, bare_model = (
        LocalBackend(build(), cache_mb=0),
        LocalBackend(build(), compile=True, cache_mb=0),
        build(),
    )
    rates = interleaved_medians(  # the compiled backend's warm-up call compiles
        {
            "eager": lambda: _sdk_rate(eager, tokens),
            "compiled": lambda: _sdk_rate(compiled, tokens),
            "bare": lambda: _bare_rate(bare_model, tokens),
        },
        repeats,
    )
    e, c, b = rates["eager"], rates["compiled"], rates["bare"]
    print(
        f"{name:22}: SDK eager {e:7.1f} tok/s, SDK compiled {c:7.1f} tok/s, bare generate {b:7.1f} tok/s; "
        f"compiled / eager {c / e:.2f}x, SDK eager / bare {e / b:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), {args.tokens} tokens, median of {args.repeats}")
    _report("full-scale twin", full_scale_twin, args.tokens, args.repeats)
    _report("Llama ~100M", mid_model, args.tokens, args.repeats)


if __name__ == "__main__":
    main()
