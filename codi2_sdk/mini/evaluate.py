"""The evaluation harness: every task on fresh cases, scored by the probes, against baselines.

For each task (in-context tasks once per number of shots) it runs ``cases`` cases over trained
attribute combinations with fresh renders, and ``cases`` cases whose query or answer is a held-out
item (a combination never seen in training), through any :class:`~codi2_sdk.Backend`. A case is right
when every attribute of every expected item is right. Baselines: for edits, returning the query
unchanged ("copy"); otherwise chance (one random value per attribute).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..backends.base import Backend
from ..config import GenerationConfig
from ..conversation import Conversation
from ..errors import Codi2Error
from ..messages import Message, assistant
from ..types import GenerationRequest
from .tasks import LORA_TASK, TASKS, Case, TaskSampler, score_answer
from .world import PICTURE_ATTRIBUTES, SOUND_ATTRIBUTES, Picture

__all__ = ["EDIT_TASKS", "evaluate", "run_case"]

EDIT_TASKS = {
    "instructed_image_edit",
    "instructed_audio_edit",
    "in_context_image_edit",
    "in_context_audio_edit",
    "multi_round_edit",
    LORA_TASK,
}


def run_case(backend: Backend, case: Case, config: GenerationConfig) -> Message:
    """Ask the backend; a multi-round case is played as a real conversation on the model's own answers."""
    if case.followups:
        conv = Conversation(backend=backend, config=config)
        answer = conv.send(*case.messages[0].parts)
        for turn in case.followups:
            answer = conv.send(*turn.parts)
        return answer
    return backend.generate(GenerationRequest(examples=case.examples, messages=case.messages, config=config))


def _chance(case: Case) -> float:
    p = 1.0
    for item in case.expected:
        attributes = PICTURE_ATTRIBUTES if isinstance(item, Picture) else SOUND_ATTRIBUTES
        p *= math.prod(1 / len(v) for v in attributes.values())
    return p


def _copy_answer(case: Case) -> Message:
    first = case.messages[0].media[0]
    return assistant(first)


def _summarise(rows: list[tuple[bool, dict[str, bool]]]) -> tuple[float, dict[str, float]]:
    if not rows:
        return 0.0, {}
    accuracy = float(np.mean([ok for ok, _ in rows]))
    names = rows[0][1].keys()
    return accuracy, {n: float(np.mean([attrs[n] for _, attrs in rows])) for n in names}


def evaluate(
    backend: Backend,
    *,
    cases: int = 50,
    tasks: Iterable[str] | None = None,
    shots: Sequence[int] = (1, 2, 3),
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``backend`` on the mini world's tasks.

    Returns:
        ``{"model": ..., "cases": ..., "seed": ..., "tasks": {name: {"accuracy", "heldout_items_accuracy",
        "baseline", "baseline_kind", "cases", "attribute_accuracy", "heldout_attribute_accuracy"}}}``;
        in-context tasks are named by shots (``in_context_image_edit_2shot``).
    """
    tasks = list(tasks or TASKS)
    runs = [(t, k) for t in tasks for k in (shots if t.startswith("in_context") else [None])]
    result: dict[str, Any] = {"model": backend.capabilities.model, "cases": cases, "seed": seed, "tasks": {}}
    bar = tqdm(total=len(runs) * cases * 2, disable=not progress, desc="evaluate")
    for run_index, (task, k) in enumerate(runs):
        rows: dict[bool, list[tuple[bool, dict[str, bool]]]] = {False: [], True: []}
        baselines: list[float] = []
        errors = 0
        name = task
        for heldout in (False, True):
            sampler = TaskSampler(np.random.default_rng([seed, run_index, int(heldout)]), heldout=heldout)
            for i in range(cases):
                case = sampler.sample(task, shots=k)
                name = case.name
                config = GenerationConfig(seed=seed * 100_003 + run_index * 1009 + i)
                try:
                    answer = run_case(backend, case, config)
                except Codi2Error:  # e.g. a rambling answer that overflows the context: scored as wrong
                    errors += 1
                    answer = assistant("")
                rows[heldout].append(score_answer(case, answer))
                if not heldout:
                    baselines.append(
                        float(score_answer(case, _copy_answer(case))[0]) if task in EDIT_TASKS else _chance(case)
                    )
                bar.update()
        accuracy, attributes = _summarise(rows[False])
        heldout_accuracy, heldout_attributes = _summarise(rows[True])
        result["tasks"][name] = {
            "accuracy": accuracy,
            "heldout_items_accuracy": heldout_accuracy,
            "baseline": float(np.mean(baselines)),
            "baseline_kind": "copy_query" if task in EDIT_TASKS else "chance",
            "cases": cases,
            "errors": errors,
            "attribute_accuracy": attributes,
            "heldout_attribute_accuracy": heldout_attributes,
        }
    bar.close()
    return result
