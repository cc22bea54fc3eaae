"""Fine-tuning a CoDi-2 model's LLM: text cross-entropy plus feature regression, on :func:`train_loop`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..conversation import Conversation
from ..model import CoDi2Model, LoraSpec, TrainingExample
from .loop import StepLog, check_training_run, train_loop

__all__ = ["TrainingLog", "examples_from_conversation", "finetune"]

BatchSource = Sequence[TrainingExample] | Callable[[random.Random, int], list[TrainingExample]]
"""Training data: a fixed list (sampled with replacement), or a function ``(rng, batch_size) -> batch``."""


_EXAMPLES_HINT = " (examples_from_conversation(conversation) gives one TrainingExample per assistant turn)"


@dataclass
class TrainingLog:
    """One logged step."""

    step: int
    loss: float
    text_loss: float
    feature_loss: float
    lr: float
    seconds: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_step(cls, entry: StepLog) -> TrainingLog:
        return cls(
            entry.step,
            entry.loss,
            entry.terms["text_loss"],
            entry.terms["feature_loss"],
            entry.lr,
            entry.seconds,
        )


def examples_from_conversation(conversation: Conversation) -> list[TrainingExample]:
    """One training example per assistant turn: the examples, system text and history before it, then the turn."""
    messages = conversation.messages
    found = []
    for i, message in enumerate(messages):
        if message.role == "assistant" and i > 0 and messages[i - 1].role == "user":
            found.append(TrainingExample(messages=messages[:i], answer=message, examples=conversation.examples))
    return found


def _batch(source: BatchSource, rng: random.Random, batch_size: int) -> list[TrainingExample]:
    if callable(source):
        return source(rng, batch_size)
    return [source[rng.randrange(len(source))] for _ in range(batch_size)]


def _mark_trainable(model: CoDi2Model, lora: LoraSpec | None, train_projectors: bool) -> None:
    """Add ``lora`` (if the model has none yet) and let only what finetuning trains require grad: the adapter
    and the tags' token rows (or the whole LLM without ``lora``), and the projectors and heads if asked."""
    if lora is not None and not model.has_lora:
        model.add_lora(lora)
    model.train()
    for param in model.parameters():
        param.requires_grad_(False)
    trainable_modules = [model.llm] + ([model.in_proj, model.out_head] if train_projectors else [])
    for module in trainable_modules:
        for name, param in module.named_parameters():
            if lora is None or module is not model.llm or "lora_" in name or "trainable_tokens" in name:
                param.requires_grad_(True)


def _finetune_step(data: BatchSource, batch_size: int) -> Callable[[int, random.Random, Any], dict[str, torch.Tensor]]:
    def step_fn(step: int, rng: random.Random, runner: Any) -> dict[str, torch.Tensor]:
        out = runner(_batch(data, rng, batch_size))
        return {"loss": out.loss, "text_loss": out.text_loss, "feature_loss": out.feature_loss}

    return step_fn


def finetune(
    model: CoDi2Model,
    data: BatchSource,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    lora: LoraSpec | None = LoraSpec(),
    train_projectors: bool = True,
    warmup_steps: int = 20,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    gradient_accumulation_steps: int = 1,
    log: Callable[[TrainingLog], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
    accelerator: Any = None,
) -> list[TrainingLog]:
    """Train ``model`` in place and return the logged steps.

    Args:
        data: training examples, or a function drawing a batch from ``(rng, batch_size)``.
        lora: the adapter to add and train (the LLM's own weights stay frozen); ``None`` trains the whole LLM.
        train_projectors: also train the input projectors and output heads.
        seed: seeds the batch draws and torch's generator (dropout).
        checkpoint_dir: where to keep a resumable state every ``checkpoint_every`` steps; a run started
            with the same folder resumes from its last state.
        gradient_accumulation_steps: batches per update (an update then sees ``batch_size`` times this many).
        accelerator: an ``accelerate.Accelerator`` to train on the processes ``accelerate launch`` started
            (each draws its own batches: the seed is offset by the process index).

    Raises:
        InvalidRequestError: a run that cannot train (:func:`~codi2_sdk.train.loop.check_training_run`), unchanged.
    """
    check_training_run(data, TrainingExample, steps, batch_size, lr, gradient_accumulation_steps, _EXAMPLES_HINT)
    _mark_trainable(model, lora, train_projectors)
    rank = accelerator.process_index if accelerator is not None else 0
    torch.manual_seed(seed + rank)
    logs = train_loop(
        model,
        _finetune_step(data, batch_size),
        steps=steps,
        lr=lr,
        rng=random.Random(seed + rank),
        weight_decay=0.01,
        warmup_steps=min(warmup_steps, steps // 10 + 1),
        state_path=Path(checkpoint_dir) / "state.pt" if checkpoint_dir is not None else None,
        save_every=checkpoint_every,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log=(lambda entry: log(TrainingLog.from_step(entry))) if log is not None else None,
        log_every=log_every,
        progress=progress,
        desc="finetune",
        accelerator=accelerator,
    )
    model.eval()
    return [TrainingLog.from_step(entry) for entry in logs]
