"""``codi2 finetune``: adapt a model to an app's own saved conversations from the command line.

The data is what an app already has: conversations it saved (:meth:`~codi2_sdk.Conversation.save`, one ``.json``
each; every assistant turn is an example) or JSONL manifests (:mod:`codi2_sdk.train.manifest`). Held-out files
given with ``--eval`` are read every ``--eval-every`` steps, and their loss is printed beside the training loss. The
model is saved to ``--out`` (a LoRA adapter on the model's LLM, with the projectors and heads). For data sets at the
scale of the paper's recipe, on several GPUs, use ``python -m codi2_sdk.train.align`` (docs/training.md).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError

if TYPE_CHECKING:
    from ..model import CoDi2Model, TrainingExample
    from .finetune import TrainingLog

__all__ = ["finetune_command", "training_examples"]


def training_examples(paths: Sequence[str | Path]) -> list[tuple[Path, list[TrainingExample]]]:
    """Each file's examples: saved conversations (``.json``: one per assistant turn) and manifests (``.jsonl``: one
    per conversation line), in the order given.

    Raises:
        ConversationFileError, InvalidMediaError, InvalidRequestError: a file that cannot be read, named.
    """
    from ..conversation import Conversation
    from .finetune import examples_from_conversation
    from .manifest import load_manifest

    found = []
    for path in map(Path, paths):
        if path.suffix == ".jsonl":
            found.append((path, list(load_manifest(path).conversations)))
        else:
            found.append((path, examples_from_conversation(Conversation.load(path))))
    return found


def _readable(model: CoDi2Model, files: list[tuple[Path, list[TrainingExample]]]) -> list[TrainingExample]:
    """The files' examples as one list, each file's checked to build prompts ``model`` can read."""
    from .finetune import check_prompts

    for path, examples in files:
        check_prompts(model, examples, str(path))
    return [example for _, examples in files for example in examples]


def _print_step(entry: TrainingLog) -> None:
    from tqdm.auto import tqdm

    held_out = f", held-out {entry.held_out['loss']:.4f}" if entry.held_out else ""
    tqdm.write(f"step {entry.step}: loss {entry.loss:.4f}{held_out}")  # above the progress bar


def finetune_command(args: argparse.Namespace) -> int:
    """Run ``codi2 finetune`` from its parsed options; returns the exit status."""
    import torch

    from ..model import CoDi2Model, LoraSpec
    from ..model.fullscale.assembly import special_token_rows
    from .finetune import finetune
    from .saving import BestModel, check_keep_best

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRequestError(f"{out} exists and is kept: give --out a new folder")
    if args.keep_best is not None:
        check_keep_best(args.keep_best, "--eval", bool(args.eval), {"--out": out})
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise InvalidRequestError(f"--lr must be a positive number, not {args.lr}")
    files, held_out_files = training_examples(args.data), training_examples(args.eval)  # read before a model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    model = CoDi2Model.from_pretrained(args.model)
    data, held_out = _readable(model, files), _readable(model, held_out_files) if held_out_files else None
    # a model without an adapter gets one, with its special tokens' rows (a pretrained LLM's new tags) trained beside
    lora = model.config.lora or LoraSpec(
        r=args.lora_rank, alpha=2 * args.lora_rank, trainable_tokens=special_token_rows(model.tokenizer)
    )
    logs = finetune(
        model,
        data,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lora=lora,
        seed=args.seed,
        checkpoint_dir=args.checkpoint_dir,
        eval_data=held_out,
        eval_every=args.eval_every,
        on_held_out=BestModel(args.keep_best, model) if args.keep_best else None,
        log=_print_step,
        log_every=max(1, min(args.eval_every, args.steps // 10)),
    )
    model.save_pretrained(out)
    print(f"{len(data)} examples, {logs[-1].step} steps; the model is in {out}/ (codi2 chat --model {out})")
    return 0
