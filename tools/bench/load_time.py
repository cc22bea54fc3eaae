#!/usr/bin/env python
"""How long a fresh process takes from nothing to a loaded codi2-mini, split into its steps, in one run.

    python tools/bench/load_time.py [--repeats 5] [--model codi2-mini]

Each repeat is a fresh interpreter that times, one after the other: ``import torch``; ``from codi2_sdk import
Conversation``; the model's code (``import codi2_sdk.backends.local``, which imports transformers and diffusers);
and ``LocalBackend.from_pretrained(model).capabilities``, which reads the weights (what a ``Conversation()`` does on
first use). The median of each step is printed, and the median of their sum against issue 11's target (a
conversation ready in <= 2 s). Beside it, the floor no SDK change can go under: a fresh interpreter that only
imports torch and transformers' ``LlamaForCausalLM`` (the LLM's class; importing it imports ``torch._dynamo``).
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

TARGET_S = 2.0

PROBE = """
import json, time
marks = [time.perf_counter()]
import torch
marks.append(time.perf_counter())
from codi2_sdk import Conversation
marks.append(time.perf_counter())
import codi2_sdk.backends.local
marks.append(time.perf_counter())
from codi2_sdk.backends.local import LocalBackend
LocalBackend.from_pretrained({model!r}).capabilities
marks.append(time.perf_counter())
print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))
"""

FLOOR = """
import json, time
start = time.perf_counter()
import torch
from transformers import LlamaForCausalLM
print(json.dumps(time.perf_counter() - start))
"""

STEPS = ("import torch", "import codi2_sdk", "import the model's code", "load the weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="codi2-mini")
    args = parser.parse_args()
    runs = [fresh_interpreter(PROBE.format(model=args.model)) for _ in range(args.repeats)]
    floor = statistics.median(fresh_interpreter(FLOOR) for _ in range(args.repeats))
    medians = [statistics.median(run[i] for run in runs) for i in range(len(STEPS))]
    print(f"model {args.model}; median of {args.repeats} fresh interpreters")
    for step, seconds in zip(STEPS, medians, strict=True):
        print(f"  {step:<26} {seconds:6.2f} s")
    total = statistics.median(sum(run) for run in runs)
    print(f"from nothing to a loaded model {total:.2f} s (target <= {TARGET_S:.0f} s); ratio {total / TARGET_S:.2f}")
    print(
        f"floor: import torch and transformers' LlamaForCausalLM alone {floor:.2f} s; ratio {floor / TARGET_S:.2f} to "
        f"the target, {total / floor:.2f} loaded model to floor"
    )


def fresh_interpreter(code: str) -> Any:
    """Run ``code`` in a new Python and return the JSON it prints."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


if __name__ == "__main__":
    main()
