#!/usr/bin/env python
"""How much more work a decoder's UNet does per second in wider calls: the ceiling of what batching can gain.

    python tools/bench/unet_batch_scaling.py [--model codi2-mini] [--modality image] [--repeats 10]

Prints the time of one UNet call (as a guided decode makes them: two rows per medium) for 1, 2, 4 and 8 media,
and the throughput of each width over width 1's. Batching requests (``codi2 serve --max-batch-size``) cannot
beat these ratios in the diffusion part of a turn, whatever the scheduler does.
"""

from __future__ import annotations

import argparse
import time

import torch

from codi2_sdk.model import CoDi2Model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--modality", default="image", choices=["image", "audio", "video"])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    model = CoDi2Model.from_pretrained(args.model)
    decoder = model.decoders[args.modality]
    cond_dim = decoder.cond_dim
    print(f"model {args.model}, {args.modality} decoder, torch threads {torch.get_num_threads()}")
    base = None
    with torch.no_grad():
        for media in (1, 2, 4, 8):
            latents = torch.randn(2 * media, *decoder.latent_shape)
            cond = torch.randn(2 * media, cond_dim)
            t = torch.full((2 * media,), 500)
            decoder._unet(latents, t, cond)  # warm-up
            began = time.perf_counter()
            for _ in range(args.repeats):
                decoder._unet(latents, t, cond)
            per_call = (time.perf_counter() - began) / args.repeats
            rate = media / per_call
            base = base or rate
            print(f"{media} media ({2 * media} rows): {per_call * 1000:.1f} ms per call; throughput x{rate / base:.2f}")


if __name__ == "__main__":
    main()
