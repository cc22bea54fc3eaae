#!/usr/bin/env python
"""What a training manifest costs a training process: memory and time to read it, beside the media it names.

    python tools/bench/manifest_memory.py [--records 200000] [--picture-kb 40]

Writes a manifest of ``--records`` conversations (a caption asked for, a picture answered; every record names one
picture of about ``--picture-kb`` kB, as a CC3M picture at 256 px is) and reads it with ``load_manifest``, as
``python -m codi2_sdk.train.align`` does in every process of a run. Prints the memory the read manifest holds
(tracemalloc's peak while reading, and what stays), the seconds it took, and the ratio of the media's bytes to the
memory held: how much memory reading the media with the manifest would have taken instead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import PIL.Image

from codi2_sdk.train.manifest import load_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--picture-kb", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        side = int((args.picture_kb * 1024 / 3) ** 0.5)  # noise does not compress: about side * side * 3 bytes
        noise = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
        PIL.Image.fromarray(noise).save(root / "picture.png")
        media_bytes = (root / "picture.png").stat().st_size * args.records
        ask = {"role": "user", "content": [{"type": "text", "text": "draw: a dog running on a beach at sunset"}]}
        answer = {"role": "assistant", "content": [{"type": "image", "path": "picture.png"}]}
        (root / "train.jsonl").write_text((json.dumps({"messages": [ask, answer]}) + "\n") * args.records)

        start = time.perf_counter()
        load_manifest(root / "train.jsonl")
        seconds = time.perf_counter() - start  # timed alone: tracing slows Python several times
        tracemalloc.start()
        manifest = load_manifest(root / "train.jsonl")
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        drawn = manifest.conversations[args.records // 2]
        assert drawn.answer.images[0].data == (root / "picture.png").read_bytes()
    print(
        json.dumps(
            {
                "records": len(manifest.conversations),
                "read_s": round(seconds, 2),
                "held_bytes_per_record": round(held / args.records, 1),
                "peak_mb": round(peak / 1e6, 1),
                "media_gb": round(media_bytes / 1e9, 2),
                "media_over_held": round(media_bytes / held),
            }
        )
    )


if __name__ == "__main__":
    main()
