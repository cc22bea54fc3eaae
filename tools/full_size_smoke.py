#!/usr/bin/env python
"""The full-scale decoders and encoders at their published sizes, on a CPU, before a GPU is lent.

    python tools/full_size_smoke.py [--steps 2] [--threads 2]

Builds unCLIP (SD 2.1 unCLIP shapes), AudioLDM2 and Zeroscope pipelines and ImageBind's audio and video towers at
their published sizes with random bf16 weights (``tools/gpu_check.py``'s builders, nothing downloaded), saves them
as their folders are published, ``assemble``s them in bf16 beside a tiny LLM (a 7 B one would not fit beside them
in this machine's memory), then answers one turn that writes each medium (``--steps`` diffusion steps, small sizes)
and one that reads each. A JSON line per step with the seconds since the start. What it checks: the full-size
builders, the folder layouts, the 1024-wide features, projectors and conditioning shapes, and bf16 through every
pipeline component; not speed (see ``gpu_check.py``). About 12 GB of scratch disk and 6 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import PIL.Image
import torch
from gpu_check import FULL, build_llm_folder, build_media_folders

from codi2_sdk import Audio, Conversation, Image, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import assemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="diffusion steps of each written medium")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    def report(step: str, **figures) -> None:  # type: ignore[no-untyped-def]
        print(json.dumps({"step": step, "s": round(time.perf_counter() - began, 1), **figures}), flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        llm = build_llm_folder(root / "tiny", tiny=True, device="cpu")
        for name, count in build_media_folders(root, tiny=False).items():
            report(f"built {name}", parameters_m=round(count / 1e6))
        model = assemble(
            llm=llm,
            unclip=root / "unclip",
            audioldm2=root / "audioldm2",
            zeroscope=root / "zeroscope",
            imagebind=root / "imagebind_huge.pth",
            feature_dim=1024,
            imagebind_args=FULL["imagebind_audio"],
            imagebind_video_args=FULL["imagebind_video"],
            dtype=torch.bfloat16,
        )
        report("assembled", dtypes=sorted({str(p.dtype) for p in model.parameters()}))
        backend = LocalBackend(model)
        small = {
            "image": {"steps": args.steps, "size": 64},
            "audio": {"steps": args.steps, "duration": 1.0},
            "video": {"steps": args.steps, "num_frames": 2, "width": 64, "height": 32},
        }
        for modality, settings in small.items():
            config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 2}, modality: settings}
            (made,) = Conversation(backend=backend, config=config).send("draw a red circle").media
            facts = {k: getattr(made, k) for k in ("width", "height", "duration", "frames") if hasattr(made, k)}
            report(f"wrote {modality}", **facts)
        rng = np.random.default_rng(0)
        shown = {
            "image": Image.from_pil(PIL.Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))),
            "audio": Audio.from_array(0.3 * np.sin(np.arange(16000) / 3), sample_rate=16000),
            "video": Video.from_frames(rng.integers(0, 255, (4, 224, 224, 3), dtype=np.uint8), fps=4),
        }
        for modality, part in shown.items():
            config = {"seed": 0, "output_modality": "text", "text": {"max_new_tokens": 2}}
            Conversation(backend=backend, config=config).send(part, "what is this")
            report(f"read {modality}")


if __name__ == "__main__":
    main()
