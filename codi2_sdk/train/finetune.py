"""The LLM training loop: text cross-entropy plus feature regression, AdamW, cosine schedule, resumable."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..conversation import Conversation
from ..model import CoDi2Model, LoraSpec, TrainingExample

__all__ = ["TrainingLog", "examples_from_conversation", "finetune"]

BatchSource = Sequence[TrainingExample] | Callable[[random.Random, int], list[TrainingExample]]
"""Training data: a fixed list (sampled with replacement), or a function ``(rng, batch_size) -> batch``."""


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
    log: Callable[[TrainingLog], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
) -> list[TrainingLog]:
    """Train ``model`` in place and return the logged steps.

    Args:
        data: training examples, or a function drawing a batch from ``(rng, batch_size)``.
        lora: the adapter to add and train (the LLM's own weights stay frozen); ``None`` trains the whole
            LLM (how a small model is trained from scratch).
        train_projectors: also train the input projectors and output heads.
        checkpoint_dir: where to keep a resumable state every ``checkpoint_every`` steps; a run started
            with the same folder resumes from its last state.
    """
    if lora is not None and not model.has_lora:
        model.add_lora(lora)
    model.train()
    for param in model.parameters():
        param.requires_grad_(False)
    trainable_modules = [model.llm] + ([model.in_proj, model.out_head] if train_projectors else [])
    for module in trainable_modules:
        for name, param in module.named_parameters():
            if lora is None or module is not model.llm or "lora_" in name:
                param.requires_grad_(True)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(named.values(), lr=lr, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 10 + 1), steps)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    start = 0
    state_path = Path(checkpoint_dir) / "state.pt" if checkpoint_dir is not None else None
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["params"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]

    logs: list[TrainingLog] = []
    began = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="finetune")
    for step in bar:
        out = model(_batch(data, rng, batch_size))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(named.values(), 1.0)
        optimizer.step()
        schedule.step()
        if state_path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_suffix(".tmp")
            torch.save(
                {
                    "params": {n: p.detach() for n, p in named.items()},
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step + 1,
                },
                tmp,
            )
            tmp.replace(state_path)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            entry = TrainingLog(
                step + 1,
                float(out.loss.detach()),
                float(out.text_loss),
                float(out.feature_loss),
                schedule.get_last_lr()[0],
                time.perf_counter() - began,
            )
            logs.append(entry)
            bar.set_postfix(loss=f"{entry.loss:.4f}")
            if log is not None:
                log(entry)
    model.eval()
    return logs
