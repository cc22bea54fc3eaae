"""Where a rebuild writes and what seeds it (:class:`Places`), the stages' log, and the training loop on a stage."""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codi2_sdk.mini.architecture import FIRST_IMAGE_DECODER, mini_config
from codi2_sdk.model import CoDi2Config, DecoderSpec
from codi2_sdk.train import StepLog, train_loop

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Places:
    """Where a rebuild writes (the checkpoint folder ``out``, its ``training/`` logs, the resumable states under
    ``runs``) and ``seed``, which offsets every stage's data seed."""

    out: Path = ROOT / "codi2_sdk" / "weights" / "codi2-mini"
    runs: Path = ROOT / "runs" / "mini"
    seed: int = 0

    @property
    def logs(self) -> Path:
        return self.out / "training"

    @functools.cached_property
    def config(self) -> CoDi2Config:
        """codi2-mini's architecture, as shipped."""
        return mini_config()

    @functools.cached_property
    def first_config(self) -> CoDi2Config:
        """What the stages before ``vae-fine`` built and trained: the first image decoder (8x8x16 latents)."""
        image = DecoderSpec(kind="latent_image", args=FIRST_IMAGE_DECODER)
        return self.config.model_copy(update={"decoders": {**self.config.decoders, "image": image}})


class Log:
    """Appends lines to the stage's log file and echoes them."""

    def __init__(self, folder: Path, stage: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{stage}.log"
        self.began = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.began:8.1f}s] {message}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def run_stage(
    at: Places,
    stage: str,
    modules: torch.nn.Module,
    step_fn: Callable[[int, np.random.Generator, torch.nn.Module], torch.Tensor | dict[str, torch.Tensor]],
    *,
    steps: int,
    lr: float,
    log: Log,
    ema: object | None = None,
    every: int = 50,
    save_every: int = 250,
) -> None:
    """The project's training loop on a stage: resumable from runs/mini/<stage>/state.pt, seeded per stage."""

    def report(entry: StepLog) -> None:
        log(f"step {entry.step}/{steps} loss {entry.loss:.5f} lr {entry.lr:.2e} ({entry.seconds:.0f} s in this run)")

    train_loop(
        modules,
        step_fn,
        steps=steps,
        lr=lr,
        rng=np.random.default_rng(zlib.crc32(stage.encode()) + at.seed),
        warmup_steps=min(100, steps // 10),
        state_path=at.runs / stage / "state.pt",
        save_every=save_every,
        ema=ema,
        log=report,
        log_every=every,
    )
