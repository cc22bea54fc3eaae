#!/usr/bin/env python
"""Train codi2-mini into the package's weights folder: one stage, or the whole recipe.

    python tools/train_mini.py --list          # every run of the recipe, in order, with its command
    python tools/train_mini.py all             # run them all, in order: rebuilds the shipped weights' recipe
    python tools/train_mini.py encoders        # one stage (its defaults from the recipe)
    python tools/train_mini.py llm --steps 4500  # resume a stage's run to more steps
    python tools/train_mini.py --docs-table    # the training table of docs/mini.md

The recipe (``tools/mini_recipe/recipe.py``, ``RECIPE``) is the one place the stages, their order, steps,
learning rates, needs and outputs live. Each stage is seeded, resumable (its state is kept under
runs/mini/<stage>/ every few hundred steps; run the same command again to resume), logs to
codi2_sdk/weights/codi2-mini/training/<stage>.log and prints its wall time. Two runs of one stage wait for each
other (they share its state file).
"""

from __future__ import annotations

import argparse
import fcntl
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import torch  # noqa: E402
from mini_recipe.places import Log, Places  # noqa: E402
from mini_recipe.recipe import RECIPE, Run, docs_table, places_for, runs, stage  # noqa: E402


def train(
    name: str, *, steps: int | None, threads: int | None, seed: int, out: Path | None, runs_at: Path | None
) -> None:
    """Run one stage of the recipe (its first entry's defaults, unless told otherwise)."""
    entry = stage(name)
    threads = threads or entry.threads
    at = places_for(out, runs_at, seed)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    at.runs.mkdir(parents=True, exist_ok=True)
    lock = (at.runs / f"{name}.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another run of {name} is going; waiting for it to finish, then resuming", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    log = Log(at.logs, name)
    steps = steps or entry.steps
    log(f"stage {name}: {steps} steps, lr {entry.lr:g}, seed {seed}, {threads} thread(s)")
    began = time.perf_counter()
    entry.run(at, steps, entry.lr, log)
    log(f"stage {name} done in {(time.perf_counter() - began) / 60:.1f} min")


def train_all(*, threads: int | None, seed: int, out: Path | None) -> None:
    """Every run of the recipe in order, each in its own process (as its command would run it)."""
    for run in runs():
        command = _arguments(run, threads, seed, out)
        print("$ python tools/train_mini.py " + " ".join(command), flush=True)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *command], check=True)


def _arguments(run: Run, threads: int | None, seed: int, out: Path | None) -> list[str]:
    words = [run.stage.name, "--steps", str(run.steps), "--threads", str(threads or run.stage.threads)]
    words += ["--seed", str(seed)] + (["--out", str(out)] if out else [])
    if run.stage.runs:
        words += ["--runs", str(HERE.parent / run.stage.runs)]
    return words


def main(argv: list[str] | None = None) -> int:
    names = list(dict.fromkeys(entry.name for entry in RECIPE))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", choices=[*names, "all"], help="a stage, or all of them in order")
    parser.add_argument("--steps", type=int, help="training steps (default: the stage's own)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the stage's own)")
    parser.add_argument("--seed", type=int, default=0, help="offsets every stage's data seed and seeds torch")
    parser.add_argument("--out", type=Path, help=f"checkpoint folder to write (default: {Places().out})")
    parser.add_argument("--runs", type=Path, help=f"folder for resumable states (default: {Places().runs})")
    parser.add_argument("--list", action="store_true", help="print every run of the recipe, in order")
    parser.add_argument("--docs-table", action="store_true", help="print the training table of docs/mini.md")
    args = parser.parse_args(argv)
    if args.list:
        for run in runs():
            print(run.command())
    elif args.docs_table:
        print(docs_table())
    elif args.stage == "all":
        train_all(threads=args.threads, seed=args.seed, out=args.out)
    elif args.stage:
        train(args.stage, steps=args.steps, threads=args.threads, seed=args.seed, out=args.out, runs_at=args.runs)
    else:
        parser.error("name a stage, or all, or --list")
    return 0


if __name__ == "__main__":
    sys.exit(main())
