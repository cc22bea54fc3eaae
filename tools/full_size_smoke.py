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
from gpu_check import FULL, build_folders, full_audioldm2_pipeline, full_unclip_pipeline, full_zeroscope_pipeline

from codi2_sdk import Audio, Conversation, Image, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import ImageBindAudioEncoder, ImageBindVideoEncoder, assemble
from codi2_sdk.model.imagebind.audio import official_key
from codi2_sdk.model.imagebind.video import official_video_key

BUILDERS = {"unclip": full_unclip_pipeline, "audioldm2": full_audioldm2_pipeline, "zeroscope": full_zeroscope_pipeline}


def build_full_size(root: Path, report) -> None:  # type: ignore[no-untyped-def]
    """The three pipelines' folders and ``imagebind_huge.pth`` under ``root``, random bf16 weights."""
    torch.set_default_dtype(torch.bfloat16)
    try:
        for name, build in BUILDERS.items():
            pipeline = build()
            modules = [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]
            params = sum(p.numel() for module in modules for p in module.parameters())
            pipeline.save_pretrained(str(root / name))
            report(f"built {name}", parameters_m=round(params / 1e6))
        audio = ImageBindAudioEncoder(**FULL["imagebind_audio"])
        video = ImageBindVideoEncoder(**FULL["imagebind_video"])
        state = {official_key(k): v for k, v in audio.state_dict().items()}
        state |= {official_video_key(k): v for k, v in video.state_dict().items()}
        torch.save(state, root / "imagebind_huge.pth")
        report("built imagebind", parameters_m=round(sum(v.numel() for v in state.values()) / 1e6))
    finally:
        torch.set_default_dtype(torch.float32)


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
        llm = build_folders(root / "tiny", tiny=True, device="cpu")["llm"]
        build_full_size(root, report)
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
