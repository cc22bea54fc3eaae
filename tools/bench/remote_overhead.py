#!/usr/bin/env python
"""Remote / local time for the same turn, measured in one run (target: <= 1.10).

    python tools/bench/remote_overhead.py [--model codi2-mini] [--repeats 5]

The same request (an image in, an image out, fixed seed) runs through LocalBackend in-process and
through RemoteBackend against a uvicorn server on loopback serving that same model; the two are
interleaved so that machine noise hits both alike. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _serve import serve

from codi2_sdk import GenerationRequest, Image, RemoteBackend, user
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.tasks import picture_part
from codi2_sdk.mini.world import Picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="codi2-mini")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    local = LocalBackend.from_pretrained(args.model)
    image: Image = picture_part(Picture("circle", "red", "large", "left"), np.random.default_rng(0))
    request = GenerationRequest(messages=[user(image, "make it blue.")], config={"seed": 1, "output_modality": "image"})
    with serve(local) as url, RemoteBackend(url) as remote:
        local.generate(request), remote.generate(request)  # warm-up
        times: dict[str, list[float]] = {"local": [], "remote": []}
        for _ in range(args.repeats):
            for name, backend in (("local", local), ("remote", remote)):
                began = time.perf_counter()
                answer = backend.generate(request)
                times[name].append(time.perf_counter() - began)
                assert answer.images, "the turn must produce an image"
    local_s, remote_s = statistics.median(times["local"]), statistics.median(times["remote"])
    print(f"model {args.model}; {args.repeats} interleaved repeats of one image-edit turn")
    print(f"local  median {local_s * 1000:8.1f} ms")
    print(f"remote median {remote_s * 1000:8.1f} ms")
    print(f"ratio remote/local {remote_s / local_s:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
