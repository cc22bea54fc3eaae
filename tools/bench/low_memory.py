#!/usr/bin/env python
"""Memory of the low-memory mode on CPU: the LLM's weights and the process's resident memory, default vs low.

    python tools/bench/low_memory.py [--model mid|twin]

Each mode in a fresh process: a CoDi-2 model (``mid``: a random ~100 M-parameter Llama with the twin's tokenizer,
as ``decode_speed.py`` builds it; ``twin``: the full-scale twin), then ``model.reduce_memory()`` in the low mode
(the LLM's linear weights int8 through torchao; it gives the freed float weights' pages back to the system), then
one text turn. Prints the LLM's weight bytes (a quantized tensor by its inner tensors) and the process's resident
memory after the turn, as a user sees it, for each, and low / default. On a GPU, ``gpu_check.py --sdk --memory low`` reports the peak
GPU memory instead (the decoders' offloading only matters there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _nbytes(tensor) -> int:  # type: ignore[no-untyped-def]
    """Bytes a tensor holds: a quantized tensor subclass (torchao's) by its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_nbytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def measure(model_name: str, low: bool) -> dict[str, float]:
    """In this process: build, (reduce), answer, and the figures."""
    import gc

    import torch

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tools" / "bench"))
    from _models import mid_model

    from codi2_sdk import Conversation
    from codi2_sdk.backends.local import LocalBackend
    from codi2_sdk.testing.twins import full_scale_twin

    torch.set_num_threads(1)
    model = mid_model() if model_name == "mid" else full_scale_twin()
    if low:
        model.reduce_memory()
    gc.collect()
    weights = sum(_nbytes(t) for t in model.llm.state_dict().values())
    config = {"seed": 0, "output_modality": "text", "text": {"max_new_tokens": 8}}
    Conversation(backend=LocalBackend(model, cache_mb=0), config=config).send("what is this ?")
    gc.collect()
    return {"llm_weights_mb": weights / 2**20, "resident_mb": _resident_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mid", "twin"], default="mid")
    parser.add_argument("--measure", choices=["default", "low"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.model, args.measure == "low")))
        return
    figures = {}
    for mode in ("default", "low"):
        command = [sys.executable, __file__, "--model", args.model, "--measure", mode]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        figures[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    d, lo = figures["default"], figures["low"]
    print(
        f"{args.model}: LLM weights {d['llm_weights_mb']:.1f} MB -> {lo['llm_weights_mb']:.1f} MB "
        f"({lo['llm_weights_mb'] / d['llm_weights_mb']:.2f}x); resident after a turn {d['resident_mb']:.0f} MB -> "
        f"{lo['resident_mb']:.0f} MB ({lo['resident_mb'] / d['resident_mb']:.2f}x)"
    )


if __name__ == "__main__":
    main()
