"""Fine-tuning a CoDi-2 model's LLM: text cross-entropy plus feature regression, on :func:`train_loop`."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..conversation import Conversation
from ..errors import InvalidRequestError
from ..model import CoDi2Model, LoraSpec, TrainingExample
from .loop import HeldOutEvaluation, StepLog, check_training_run, finite, held_out_evaluation, seeded, train_loop
from .manifest import ManifestRecords, by_modality, modality_of

__all__ = ["TrainingLog", "check_prompts", "examples_from_conversation", "finetune"]

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
    held_out: dict[str, float] = field(default_factory=dict)
    """The held-out data's ``loss``, ``text_loss``, ``feature_loss`` (and ``loss_<modality>``) after this step, where
    it was evaluated (``finetune(eval_data=...)``); else empty."""

    def to_json(self) -> str:
        """This entry as one line of strict JSON (a skipped step's non-finite loss is ``null``)."""
        return json.dumps(finite(self.__dict__), allow_nan=False)

    def as_step(self) -> StepLog:
        """This entry as the training loop's :class:`~codi2_sdk.train.StepLog` (the inverse of :meth:`from_step`)."""
        terms = {"text_loss": self.text_loss, "feature_loss": self.feature_loss}
        return StepLog(self.step, self.loss, self.lr, self.seconds, terms, self.held_out)

    @classmethod
    def from_step(cls, entry: StepLog) -> TrainingLog:
        return cls(
            entry.step,
            entry.loss,
            entry.terms["text_loss"],
            entry.terms["feature_loss"],
            entry.lr,
            entry.seconds,
            entry.held_out,
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


def _mark_trainable(model: CoDi2Model, lora: LoraSpec | None, train_projectors: bool, seed: int) -> None:
    """Add ``lora`` (if the model has none yet; its initial weights drawn from ``seed``, the same on every process)
    and let only what finetuning trains require grad: the adapter and the tags' token rows (or the whole LLM without
    ``lora``), and the projectors and heads if asked."""
    if lora is not None and not model.has_lora:
        torch.manual_seed(seed)
        model.add_lora(lora)
    model.train()
    for param in model.parameters():
        param.requires_grad_(False)
    trainable_modules = [model.llm] + ([model.in_proj, model.out_head] if train_projectors else [])
    for module in trainable_modules:
        for name, param in module.named_parameters():
            if lora is None or module is not model.llm or "lora_" in name or "trainable_tokens" in name:
                param.requires_grad_(True)


def _loss_terms(runner: Any, batch: list[TrainingExample]) -> dict[str, torch.Tensor]:
    out = runner(batch)
    return {"loss": out.loss, "text_loss": out.text_loss, "feature_loss": out.feature_loss}


def _finetune_step(data: BatchSource, batch_size: int) -> Callable[[int, random.Random, Any], dict[str, torch.Tensor]]:
    def step_fn(step: int, rng: random.Random, runner: Any) -> dict[str, torch.Tensor]:
        return _loss_terms(runner, _batch(data, rng, batch_size))

    return step_fn


def check_prompts(model: CoDi2Model, examples: Sequence[TrainingExample], name: str = "data") -> None:
    """Build every example's prompt once, so that one ``model`` cannot read (words outside a closed vocabulary) is
    refused before training, named ``name[i]``, not when a batch draws it.

    Raises:
        InvalidRequestError: the first example whose prompt does not build.
    """
    for i, example in enumerate(examples):
        try:
            model.build_prompt(example.examples or [], example.messages, answer=example.answer)
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{name}[{i}]: {exc}") from None


def _check_run(
    model: CoDi2Model,
    data: BatchSource,
    steps: int,
    batch_size: int,
    lr: float,
    gradient_accumulation_steps: int,
    eval_data: Sequence[TrainingExample] | None,
) -> None:
    """:func:`check_training_run`, then :func:`check_prompts` on lists of examples (a manifest's records are read
    only when a batch draws them, and a function's batches only when drawn)."""
    check_training_run(
        data, TrainingExample, steps, batch_size, lr, gradient_accumulation_steps, _EXAMPLES_HINT, eval_data
    )
    for name, examples in (("data", data), ("eval_data", eval_data)):
        if examples is not None and not callable(examples) and not isinstance(examples, ManifestRecords):
            check_prompts(model, examples, name)


def _held_out_losses(
    eval_data: Sequence[TrainingExample] | None,
    batch_size: int,
    every: int,
    then: Callable[[int, dict[str, float]], None] | None,
    accelerator: Any,
) -> HeldOutEvaluation | None:
    if eval_data is None:
        return None
    return held_out_evaluation(by_modality(eval_data, modality_of), _loss_terms, batch_size, accelerator, every, then)


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
    eval_data: Sequence[TrainingExample] | None = None,
    eval_every: int = 100,
    on_held_out: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[TrainingLog], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
    accelerator: Any = None,
) -> list[TrainingLog]:
    """Train ``model`` in place and return the logged steps (a run that cannot train is refused, the model unchanged).

    Args:
        data: training examples, or a function drawing a batch from ``(rng, batch_size)``.
        lora: the adapter to add and train (the LLM's own weights stay frozen); ``None`` trains the whole LLM.
        train_projectors: also train the input projectors and output heads.
        seed: seeds the adapter's initial weights, the batch draws and torch's generator (dropout).
        checkpoint_dir: a resumable state kept every ``checkpoint_every`` steps; a run given the same folder resumes.
        gradient_accumulation_steps: batches per update (an update then sees ``batch_size`` times this many).
        eval_data: held-out examples, read every ``eval_every`` steps and after the last in batches of ``batch_size``
            (:func:`~codi2_sdk.train.loop.held_out_evaluation`): their mean losses are the logged steps' ``held_out``
            and go to ``on_held_out(step, figures)`` on every process (to keep the best model, say).
        accelerator: an ``accelerate.Accelerator`` (each process draws its own batches: the seed is offset).
    """
    gas = gradient_accumulation_steps
    _check_run(model, data, steps, batch_size, lr, gas, eval_data)
    evaluate = _held_out_losses(eval_data, batch_size, eval_every, on_held_out, accelerator)
    _mark_trainable(model, lora, train_projectors, seed)
    logs = train_loop(
        model,
        _finetune_step(data, batch_size),
        steps=steps,
        lr=lr,
        rng=seeded(seed, accelerator),
        weight_decay=0.01,
        warmup_steps=min(warmup_steps, steps // 10 + 1),
        state_path=Path(checkpoint_dir) / "state.pt" if checkpoint_dir is not None else None,
        save_every=checkpoint_every,
        gradient_accumulation_steps=gas,
        log=(lambda entry: log(TrainingLog.from_step(entry))) if log is not None else None,
        log_every=log_every,
        evaluate=evaluate,
        progress=progress,
        desc="finetune",
        accelerator=accelerator,
    )
    model.eval()
    return [TrainingLog.from_step(entry) for entry in logs]
