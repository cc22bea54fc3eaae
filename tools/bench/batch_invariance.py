#!/usr/bin/env python
"""Does a request's row of a batched CPU kernel depend on the batch? The measurement behind batching's
equivalence contract (issue 12, item 3).

    OMP_NUM_THREADS=1 python tools/bench/batch_invariance.py
    OMP_NUM_THREADS=2 python tools/bench/batch_invariance.py

For the kernels codi2-mini runs (linear, conv, scaled-dot-product attention with a padding mask) it prints,
for batch widths 4 and 8: whether one input's output row is the same wherever it sits in the batch and
whatever the other rows hold ("fixed width"), and whether it equals the unbatched (width 1) result ("alone").
On this project's CPU machine, 1 thread: every kernel is invariant at a fixed width, and none equals the
width-1 result bit for bit; at 2 threads attention is not invariant either. So "batched == alone" can hold
exactly only where "alone" means the same fixed width (a request padded to the batch width, KV caches of a
fixed length) and one thread per process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def invariance(run, row: torch.Tensor, fill, width: int) -> tuple[bool, bool, float]:
    """(same row wherever it sits and whatever is beside it, same as alone, the largest difference to alone)."""
    outputs = []
    for position in range(width):
        batch = fill(width)
        batch[position] = row
        outputs.append(run(batch)[position])
    alone = run(row[None])[0]
    fixed = all(torch.equal(o, outputs[0]) for o in outputs)
    return fixed, torch.equal(alone, outputs[0]), float((alone - outputs[0]).abs().max())


def main() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    heads, keys, dim = 4, 64, 64

    def attention(batch: torch.Tensor) -> torch.Tensor:
        q, k, v, mask = batch[..., :dim], batch[..., dim : 2 * dim], batch[..., 2 * dim : 3 * dim], batch[..., -1]
        return F.scaled_dot_product_attention(q[:, :, :1], k, v, attn_mask=(mask[:, :, None, :] > 0)[:, :1])

    def attention_inputs(width: int) -> torch.Tensor:
        x = torch.randn(width, heads, keys, 3 * dim + 1)
        x[..., -1] = (torch.rand(width, 1, keys) > 0.3).float()
        x[:, :, 0, -1] = 1.0
        return x

    cases = {
        "linear 256->512": (linear, torch.randn(256), lambda w: torch.randn(w, 256)),
        "conv 64ch 8x8": (conv, torch.randn(64, 8, 8), lambda w: torch.randn(w, 64, 8, 8)),
        "attention, padding mask": (attention, attention_inputs(1)[0], attention_inputs),
    }
    print(f"torch threads: {torch.get_num_threads()}")
    with torch.no_grad():
        for name, (run, row, fill) in cases.items():
            for width in (4, 8):
                fixed, alone, gap = invariance(run, row, fill, width)
                print(
                    f"{name:26s} width {width}: fixed width {'same' if fixed else 'DIFFERS'}; "
                    f"vs alone {'same' if alone else f'differs by {gap:.1e}'}"
                )


if __name__ == "__main__":
    main()
