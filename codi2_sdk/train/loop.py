"""The one training loop: AdamW, warm-up and cosine decay, gradient clipping, optional EMA, resumable.

Everything that trains in this project runs through :func:`train_loop`: fine-tuning a model's LLM
(:func:`~codi2_sdk.train.finetune`) and every stage of codi2-mini's recipe (``tools/train_mini.py``). A step
function draws its own batch from the loop's random generator and returns the loss; the loop owns the
optimiser, the schedule, the checkpoint of its state (trainable parameters, optimiser, schedule, both
random generators, EMA) and the log. Given a Hugging Face ``Accelerator``, the module and optimiser are
prepared by it (DDP, FSDP or DeepSpeed ZeRO across the processes ``accelerate launch`` started, as its config
says; DDP and FSDP on GPUs or CPUs), the resumable state is accelerate's own, and only the main process logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..errors import InvalidRequestError, ModelError
from .manifest import ManifestRecords

__all__ = [
    "MAX_NONFINITE_STEPS",
    "HeldOutEvaluation",
    "StepLog",
    "check_training_run",
    "held_out_evaluation",
    "seeded",
    "train_loop",
]

logger = logging.getLogger(__name__)

Rng = random.Random | np.random.Generator
"""The step function's random generator: Python's or numpy's; its state is checkpointed either way."""
StepFn = Callable[[int, Any, Any], "torch.Tensor | Mapping[str, torch.Tensor]"]
"""``(step, rng, module) -> loss``, or a mapping with ``"loss"`` and other terms to log; ``module`` is the
trained module as prepared (wrapped for data parallelism under ``accelerate``): call it for the loss."""


def check_training_run(
    data: Any,
    item: type,
    steps: int,
    batch_size: int,
    lr: float,
    gradient_accumulation_steps: int = 1,
    hint: str = "",
    eval_data: Any = None,
) -> None:
    """Refuse a run that cannot train before anything about the model changes: ``data`` (and ``eval_data``, where
    given) a non-empty sequence of ``item`` (``data`` may be a function that draws batches), ``steps``,
    ``batch_size`` and ``gradient_accumulation_steps`` positive whole numbers, ``lr`` positive. ``hint`` says where
    such data comes from."""
    numbers = (
        ("steps", steps),
        ("batch_size", batch_size),
        ("gradient_accumulation_steps", gradient_accumulation_steps),
    )
    for name, value in numbers:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequestError(f"{name} must be a whole number of at least 1, not {value!r}")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0 < lr < float("inf"):
        raise InvalidRequestError(f"lr must be a positive number, not {lr!r}")
    if not callable(data):
        _check_items(data, item, hint, "data", "train on")
    if eval_data is not None:
        _check_items(eval_data, item, hint, "eval_data", "evaluate on")


def _check_items(data: Any, item: type, hint: str, name: str, purpose: str) -> None:
    if isinstance(data, (str, bytes)) or not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise InvalidRequestError(f"{name} must be a list of {item.__name__}, not {type(data).__name__}{hint}")
    if len(data) == 0:
        raise InvalidRequestError(f"{name} is empty: there is nothing to {purpose}{hint}")
    if isinstance(data, ManifestRecords):  # its lines were checked when read; not read again (nor its media) here
        if data.item is not item:
            raise InvalidRequestError(f"{name} holds {data.item.__name__} records, not {item.__name__}{hint}")
        return
    wrong = next((i for i, each in enumerate(data) if not isinstance(each, item)), None)
    if wrong is not None:
        raise InvalidRequestError(f"{name}[{wrong}] is a {type(data[wrong]).__name__}, not a {item.__name__}{hint}")


@dataclass(frozen=True)
class HeldOutEvaluation:
    """What :func:`train_loop` measures on held-out data every ``every`` steps and after the last: ``figures(module)``
    gives ``{"loss": ..., other terms}``, called on every process, in eval mode and without gradients
    (:func:`held_out_evaluation` builds one from held-out items)."""

    figures: Callable[[Any], Mapping[str, float]]
    every: int = 100
    then: Callable[[int, dict[str, float]], None] | None = None
    """Called on every process after each evaluation with the step and the figures (to keep the best model, say)."""

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise InvalidRequestError(f"eval_every must be a whole number of at least 1, not {self.every!r}")


@dataclass
class StepLog:
    """One logged step."""

    step: int
    loss: float
    lr: float
    seconds: float
    """Since the loop (or its resumption) began."""
    terms: dict[str, float] = field(default_factory=dict)
    """Other loss terms the step function returned."""
    held_out: dict[str, float] = field(default_factory=dict)
    """The held-out data's ``"loss"`` and terms after this step, where it was evaluated (else empty)."""

    @classmethod
    def of(
        cls, step: int, terms: Mapping[str, torch.Tensor], lr: float, seconds: float, held_out: Mapping[str, float]
    ) -> StepLog:
        """The entry of a step whose mean ``"loss"`` and other terms are ``terms`` (read from the device here)."""
        means = {name: float(value) for name, value in terms.items()}
        return cls(step, means.pop("loss"), lr, seconds, means, dict(held_out))

    def to_json(self, **fields: Any) -> str:
        """``fields`` and this entry as one line of strict JSON: a non-finite loss (a skipped step's) is ``null``."""
        return json.dumps(finite({**fields, **self.__dict__}), allow_nan=False)


def finite(value: Any) -> Any:
    """``value`` (a number, or a dict of them) with every non-finite float as ``None``, so that it is strict JSON
    (``NaN`` is not: jq, JavaScript and most JSON readers refuse it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(each) for key, each in value.items()}
    return value


@dataclass
class _Resumable:
    """Everything a run's checkpoint holds: trained parameters, optimiser, schedule, generators, EMA."""

    module: torch.nn.Module
    named: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: Any
    rng: Rng
    ema: Any

    def save(self, path: Path, step: int) -> None:
        """Write the state after ``step`` steps (atomically: a crash keeps the previous one)."""
        rng = self.rng.bit_generator.state if isinstance(self.rng, np.random.Generator) else self.rng.getstate()
        state = {
            "params": {n: p.detach() for n, p in self.named.items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rng,
            "torch_rng": torch.get_rng_state(),
            "step": step,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def load(self, path: Path) -> int:
        """Restore a saved state; returns its step."""
        state = torch.load(path, weights_only=False)
        self.module.load_state_dict(state["params"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if isinstance(self.rng, np.random.Generator):
            self.rng.bit_generator.state = state["rng"]
        else:
            self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        return int(state["step"])


class _AcceleratedResumable:
    """A run's state under ``accelerate`` (DDP, FSDP, DeepSpeed): the model, optimizer, schedule, EMA and the
    libraries' generators through ``accelerator.save_state`` (sharded states are saved by shard, as each backend
    does), beside each process's own batch generator and the step. ``path``'s folder ``<name>.accelerate/``."""

    def __init__(self, accelerator: Any, schedule: Any, rng: Rng, ema: Any) -> None:
        self.accelerator, self.rng = accelerator, rng
        accelerator.register_for_checkpointing(schedule)
        if ema is not None:
            accelerator.register_for_checkpointing(ema)

    @staticmethod
    def folder(path: Path) -> Path:
        return path.with_suffix(".accelerate")

    def exists(self, path: Path) -> bool:
        return (self.folder(path) / "step.json").exists()

    def save(self, path: Path, step: int) -> None:
        folder = self.folder(path)
        self.accelerator.save_state(str(folder))
        rng = self.rng.bit_generator.state if isinstance(self.rng, np.random.Generator) else self.rng.getstate()
        torch.save(rng, folder / f"batches_{self.accelerator.process_index}.pt")
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:  # written last: a state without it is incomplete
            (folder / "step.json").write_text(json.dumps({"step": step}))

    def load(self, path: Path) -> int:
        folder = self.folder(path)
        self.accelerator.load_state(str(folder))
        rng = torch.load(folder / f"batches_{self.accelerator.process_index}.pt", weights_only=False)
        if isinstance(self.rng, np.random.Generator):
            self.rng.bit_generator.state = rng
        else:
            self.rng.setstate(rng)
        return int(json.loads((folder / "step.json").read_text())["step"])


@dataclass
class _Optimization:
    """What a training run updates and with what: the module as it runs (wrapped by accelerate, if given), the
    trained parameters, AdamW and the warm-up cosine schedule."""

    runner: Any
    named: dict[str, torch.nn.Parameter]
    optimizer: Any
    schedule: Any
    main: bool
    skipped: int = 0
    """Steps skipped in a row, their loss or gradients not finite."""

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return list(self.named.values())

    @classmethod
    def of(
        cls, module: torch.nn.Module, lr: float, weight_decay: float, warmup_steps: int, steps: int, accelerator: Any
    ) -> _Optimization:
        named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        optimizer: Any = torch.optim.AdamW(list(named.values()), lr=lr, weight_decay=weight_decay)
        schedule = get_cosine_schedule_with_warmup(optimizer, warmup_steps, steps)
        if accelerator is None:
            return cls(module, named, optimizer, schedule, True)
        # The schedule stays ours: accelerate would step a prepared one once per process.
        runner, optimizer = accelerator.prepare(module, optimizer)
        # FSDP2 swaps the module's parameters for sharded ones in place: clip (and check) what is trained now
        named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        return cls(runner, named, optimizer, schedule, accelerator.is_main_process)

    def resumable(
        self, module: torch.nn.Module, rng: Rng, ema: Any, accelerator: Any
    ) -> _Resumable | _AcceleratedResumable:
        """The run's resumable state: this loop's own, or accelerate's under an accelerator."""
        if accelerator is None:
            return _Resumable(module, self.named, self.optimizer, self.schedule, rng, ema)
        return _AcceleratedResumable(accelerator, self.schedule, rng, ema)

    def backward(self, loss: torch.Tensor, accelerator: Any, share: float) -> None:
        """Add ``share`` of ``loss``'s gradients to those gathered for this step."""
        if accelerator is None:
            (loss * share).backward()
        elif _deepspeed(accelerator):  # DeepSpeed divides by its own gradient_accumulation_steps
            accelerator.backward(loss)
        else:
            accelerator.backward(loss * share)

    def apply(self, accelerator: Any, ema: Any, step: int) -> None:
        """Step ``step``'s update from the gradients gathered: clipped to norm 1, then the schedule and EMA stepped.
        Where their norm is not finite (a NaN or infinite loss on any process: DDP and FSDP reduce the gradients, so
        every process sees the same norm), the parameters, the schedule and the EMA are left as they were, with a
        warning, and :data:`MAX_NONFINITE_STEPS` such steps in a row raise :class:`ModelError`."""
        params = self.params
        if accelerator is not None:
            norm = accelerator.clip_grad_norm_(params, 1.0)  # None under DeepSpeed, which clips (and checks) itself
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        finite = norm is None or bool(torch.isfinite(torch.as_tensor(norm)).all())
        if finite:
            self.optimizer.step()
            self.schedule.step()
            if ema is not None:
                ema.step(params)
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped = 0 if finite else self.skipped + 1
        if self.skipped:
            _check_skipped(self.skipped, step, self.main)

    def step(self, step_fn: StepFn, step: int, rng: Rng, accumulate: int, accelerator: Any) -> dict[str, torch.Tensor]:
        """Draw ``accumulate`` batches and gather their gradients (synchronised across processes at the last only);
        returns the batches' mean loss and terms, detached (read only when logged: reading waits for the device)."""
        totals: dict[str, torch.Tensor] = {}
        for micro in range(accumulate):
            last = micro == accumulate - 1
            syncing = contextlib.nullcontext() if accelerator is None or last else accelerator.no_sync(self.runner)
            with syncing:
                out = step_fn(step, rng, self.runner)
                terms = dict(out) if isinstance(out, Mapping) else {"loss": out}
                self.backward(terms["loss"], accelerator, 1.0 / accumulate)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach() / accumulate
        return totals


def _deepspeed(accelerator: Any) -> bool:
    return str(getattr(accelerator.distributed_type, "value", "")) == "DEEPSPEED"


MAX_NONFINITE_STEPS = 10
"""Steps in a row whose loss or gradients are not finite after which a run stops (each one is skipped)."""


def _check_skipped(in_a_row: int, step: int, main: bool) -> None:
    if main:
        logger.warning("step %d: the loss or its gradients are not finite; the step is skipped", step)
    if in_a_row >= MAX_NONFINITE_STEPS:
        raise ModelError(
            f"the loss or its gradients were not finite for {in_a_row} steps in a row (up to step {step}), and "
            "each was skipped: lower the learning rate, train in float32 (with bf16 mixed precision), or check the "
            "data; the last saved state is as it was before them"
        )


def train_loop(
    module: torch.nn.Module,
    step_fn: StepFn,
    *,
    steps: int,
    lr: float,
    rng: Rng,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    state_path: str | Path | None = None,
    save_every: int = 100,
    gradient_accumulation_steps: int = 1,
    ema: Any = None,
    log: Callable[[StepLog], None] | None = None,
    log_every: int = 10,
    evaluate: HeldOutEvaluation | None = None,
    progress: bool = False,
    desc: str = "train",
    accelerator: Any = None,
) -> list[StepLog]:
    """Train ``module``'s parameters that require grad for ``steps`` steps; returns the logged steps.

    Args:
        step_fn: draws a batch with ``rng`` and returns its loss (or ``{"loss": ..., other terms}``).
        rng: the generator ``step_fn`` draws from; seed it for a reproducible run.
        state_path: the resumable state, kept every ``save_every`` steps and at the end (an existing one resumes).
        gradient_accumulation_steps: batches per update, their gradients averaged (``step_fn`` is called this many
            times with the same ``step``; processes synchronise at the last only).
        ema: a diffusers ``EMAModel`` over the trained parameters, stepped after each update and checkpointed.
        evaluate: figures on held-out data (:func:`held_out_evaluation`), logged with the steps they follow
            (:attr:`StepLog.held_out`); they change nothing the run trains.
        accelerator: an ``accelerate.Accelerator``: gradients are averaged over its processes (DDP), or parameters,
            gradients and optimizer state sharded (FSDP, DeepSpeed ZeRO), as its config says; each process's ``rng``
            should be seeded differently so that they draw different batches. The resumable state is then
            ``accelerator.save_state``'s, in ``state_path``'s folder ``<name>.accelerate/``, and every process must
            call this function.
    """
    run = _Optimization.of(module, lr, weight_decay, warmup_steps, steps, accelerator)
    path = Path(state_path) if state_path is not None else None
    parts = run.resumable(module, rng, ema, accelerator)
    start = parts.load(path) if path is not None and parts.exists(path) else 0
    logs: list[StepLog] = []
    began = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not (progress and run.main), desc=desc)
    for step in bar:
        terms = run.step(step_fn, step, rng, gradient_accumulation_steps, accelerator)
        run.apply(accelerator, ema, step + 1)
        # every process takes part in an accelerated save (a sharded state is gathered or saved by shard)
        saver = run.main or isinstance(parts, _AcceleratedResumable)
        if path is not None and saver and _due(step, save_every, steps):
            parts.save(path, step + 1)
        held_out = _held_out(evaluate, run.runner, module, step, steps)
        if run.main and (held_out or _due(step, log_every, steps)):
            lr_now = run.schedule.get_last_lr()[0]
            entry = StepLog.of(step + 1, terms, lr_now, time.perf_counter() - began, held_out)
            logs.append(entry)
            bar.set_postfix(loss=f"{entry.loss:.4f}", **({"held_out": f"{held_out['loss']:.4f}"} if held_out else {}))
            if log is not None:
                log(entry)
    return logs


def seeded(seed: int, accelerator: Any = None) -> random.Random:
    """The batch generator of this process (``seed`` offset by its index under ``accelerator``, so that processes
    draw different batches), with torch's generator (dropout) seeded alike."""
    rank = accelerator.process_index if accelerator is not None else 0
    torch.manual_seed(seed + rank)
    return random.Random(seed + rank)


def _due(step: int, every: int, steps: int) -> bool:
    """Whether what is done every ``every`` steps (and after the last) is due after ``step``."""
    return (step + 1) % every == 0 or step + 1 == steps


def _held_out(
    evaluate: HeldOutEvaluation | None, runner: Any, module: torch.nn.Module, step: int, steps: int
) -> dict[str, float]:
    """``evaluate``'s figures after ``step`` (none where not due): in eval mode (no dropout) and without gradients,
    each submodule's mode restored after; then its :attr:`~HeldOutEvaluation.then`."""
    if evaluate is None or not _due(step, evaluate.every, steps):
        return {}
    modes = {part: part.training for part in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            figures = {name: float(value) for name, value in evaluate.figures(runner).items()}
    finally:
        for part, training in modes.items():
            part.training = training
    if evaluate.then is not None:
        evaluate.then(step + 1, figures)
    return figures


def held_out_evaluation(
    groups: Mapping[str, Sequence[Any]],
    loss_of: Callable[[Any, list[Any]], Mapping[str, torch.Tensor]],
    batch_size: int,
    accelerator: Any = None,
    every: int = 100,
    then: Callable[[int, dict[str, float]], None] | None = None,
) -> HeldOutEvaluation:
    """A :class:`HeldOutEvaluation` every ``every`` steps that reads every held-out item once, in batches of at most
    ``batch_size`` items of one group (a modality, say), the items shared out among ``accelerator``'s processes.

    ``loss_of(module, batch)`` gives a batch's ``"loss"`` and other terms; each figure returned is its mean over the
    items (a batch's value weighted by its size), with ``loss_<group>`` for each group where there are several.

    Raises:
        InvalidRequestError: no held-out items, or ``batch_size`` or ``every`` not a whole number of at least 1.
    """
    found = {group: items for group, items in sorted(groups.items()) if len(items)}
    if not found:
        raise InvalidRequestError("the held-out data is empty: there is nothing to evaluate on")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidRequestError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)

    def evaluate(module: Any) -> dict[str, float]:
        sums: dict[str, torch.Tensor] = {}
        for group, items in found.items():
            mine = range(rank, len(items), world)
            # Every process runs as many batches (a sharded model's forward is collective): a short share runs one
            # of weight 0.
            for first in range(0, -(-len(items) // world), batch_size):
                chosen = mine[first : first + batch_size]
                terms = loss_of(module, [items[i] for i in chosen] or [items[0]])
                weight = torch.as_tensor(float(len(chosen)), device=terms["loss"].device)
                for name, value in [*terms.items(), (f"group/{group}", terms["loss"]), (f"items/{group}", weight)]:
                    sums[name] = sums.get(name, 0.0) + value.detach().float() * (1.0 if "items/" in name else weight)
        names = sorted(sums)
        totals = torch.stack([sums[name] for name in names])
        if world > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        got = dict(zip(names, totals.tolist(), strict=True))
        counts = {group: got[f"items/{group}"] for group in found}
        means = {name: value / sum(counts.values()) for name, value in got.items() if "/" not in name}
        if len(found) > 1:
            means |= {f"loss_{group}": got[f"group/{group}"] / counts[group] for group in found}
        return means

    return HeldOutEvaluation(evaluate, every, then)
