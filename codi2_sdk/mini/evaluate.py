"""The evaluation harness: every task on fresh cases, scored by the probes, against baselines.

For each task (in-context tasks once per number of shots) it runs ``cases`` cases over trained
attribute combinations with fresh renders, and ``cases`` cases whose query or answer is a held-out
item (a combination never seen in training), through any :class:`~codi2_sdk.Backend`. A case is right
when every attribute of every expected item is right. Baselines: for edits, returning the query
unchanged ("copy"); otherwise chance (one random value per attribute).

Audio edits are also scored with the paper's measures (:mod:`codi2_sdk.metrics`): the log-spectral distance
of each edited clip to a render of its target, and KL and FD over an audio encoder's features (codi2-mini's own
by default), beside the same figures for a second render of the target (how close two renders of one sound
are: the floor) and for the unchanged query (the copy baseline).

Subject-driven generation is also scored with DreamBench's measures computed on this world, with codi2-mini's
own image encoder standing in for DINO and CLIP: DINO-style (its texture branch's responses: surface detail)
and CLIP-I-style (its pooled feature, the space the LLM reads and writes) cosines of the answer to the subject's
reference pictures,
and a CLIP-T-style prompt fidelity: the cosine of the answer to an exact render of what the prompt asks for.
Each is given beside the same figure for such a render (what a right answer scores) and for the first
reference picture returned unchanged (the copy baseline).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..backends.base import Backend
from ..config import GenerationConfig
from ..content import Audio, Image
from ..conversation import Conversation
from ..errors import Codi2Error
from ..events import GenerationRequest
from ..messages import Message, assistant
from ..metrics import AudioEditMetrics, subject_similarity
from .tasks import (
    LORA_TASK,
    SUBJECT_TASK,
    TASKS,
    Case,
    TaskSampler,
    item_attributes,
    picture_part,
    score_answer,
    sound_part,
)
from .world import Picture, Sound

__all__ = [
    "AUDIO_EDIT_TASKS",
    "EDIT_TASKS",
    "evaluate",
    "mini_audio_features",
    "mini_image_features",
    "run_case",
]

EDIT_TASKS = {
    "instructed_image_edit",
    "instructed_audio_edit",
    "in_context_image_edit",
    "in_context_audio_edit",
    "in_context_video_edit",
    "multi_round_edit",
    LORA_TASK,
    SUBJECT_TASK,  # the copy baseline returns the first reference picture
}


AUDIO_EDIT_TASKS = {"instructed_audio_edit", "in_context_audio_edit"}
"""Tasks scored with the audio editing measures as well."""


@functools.cache
def _mini_encoder(modality: str) -> Any:
    from ..model.modeling import resolve_checkpoint
    from ..model.parts import load_kind

    return load_kind("encoder", f"cnn_{modality}", resolve_checkpoint("codi2-mini") / "encoders" / modality)


def mini_audio_features(clips: list[Audio]) -> np.ndarray:
    """codi2-mini's audio encoder's pooled features (the embedding behind the KL and FD of ``codi2 eval``)."""
    import torch

    encoder = _mini_encoder("audio")
    with torch.no_grad():
        return encoder(encoder.preprocess(clips))[:, 0].numpy()  # type: ignore[no-any-return]


def mini_image_features(pictures: Sequence[Any], *, kind: str = "pooled") -> np.ndarray:
    """codi2-mini's image encoder's features as unit vectors: ``"pooled"`` (the space the LLM reads and writes:
    the CLIP-I-style embedding) or ``"texture"`` (its texture branch's responses, surface detail wherever it
    lies: the DINO-style one)."""
    import torch

    encoder = _mini_encoder("image")
    pixels = encoder.preprocess([p if isinstance(p, Image) else Image.from_pil(p) for p in pictures])
    with torch.no_grad():
        feature = encoder(pixels)[:, 0] if kind == "pooled" else encoder.texture(pixels)
    return torch.nn.functional.normalize(feature, dim=-1).numpy()  # type: ignore[no-any-return]


def _subject_metrics(rows: list[tuple[Image, list[Image], Image, Image]]) -> dict[str, float]:
    """DINO-, CLIP-I- and CLIP-T-style scores of the answers, of a render of the asked picture (floor: what
    a right answer scores) and of the first reference returned unchanged (copy)."""
    answers, references, targets, renders = (list(column) for column in zip(*rows, strict=True))
    copies = [refs[0] for refs in references]
    asked = [[t] for t in targets]
    out: dict[str, float] = {}
    measures = (("dino", "texture", references), ("clip_i", "pooled", references), ("clip_t", "pooled", asked))
    for name, kind, against in measures:
        embed = functools.partial(mini_image_features, kind=kind)
        out[name] = subject_similarity(embed, answers, against)
        out[f"{name}_render_floor"] = subject_similarity(embed, renders, against)
        out[f"{name}_copy_query"] = subject_similarity(embed, copies, against)
    return out


def _audio_metrics(pairs: list[tuple[Audio, Audio, Audio, Audio]], embed: Any) -> dict[str, float]:
    """The measures of the answers, of a second render of each target (floor) and of the query (copy)."""
    metrics = AudioEditMetrics(embed)
    answers, targets, renders, queries = (list(column) for column in zip(*pairs, strict=True))
    out = metrics.score(answers, targets)
    out |= {f"{k}_render_floor": v for k, v in metrics.score(renders, targets).items()}
    out |= {f"{k}_copy_query": v for k, v in metrics.score(queries, targets).items()}
    return out


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
        p *= math.prod(1 / len(v) for v in item_attributes(item).values())
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


FULL_SHOTS = (1, 2, 3)
"""The example counts of a full run's in-context rows."""


def _rows(tasks: Iterable[str], shots: Sequence[int]) -> list[tuple[str, int | None]]:
    """The rows of a run: each task once, an in-context one at each of ``shots``."""
    return [(t, k) for t in tasks for k in (shots if t.startswith("in_context") else [None])]


_FULL_ROWS = _rows(TASKS, FULL_SHOTS)


def _row_index(task: str, shots: int | None) -> int:
    """A row's place in the full run (``_FULL_ROWS``), which seeds its cases: a run of some rows draws for each the
    cases the full run draws, so ``--cases 150 --tasks X`` continues its 50. Rows a full run has not (the LoRA's
    task, other shot counts) come after it."""
    if (task, shots) in _FULL_ROWS:
        return _FULL_ROWS.index((task, shots))
    names = [*TASKS, LORA_TASK]
    if task not in names:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(names)}")
    return len(_FULL_ROWS) + 100 * names.index(task) + (shots or 0)


@dataclass
class _RowScores:
    """One row's (task and shot count's) answers as they are scored, trained and held-out items apart."""

    task: str
    seed: int
    run_index: int
    name: str = ""
    errors: int = 0
    rows: dict[bool, list[tuple[bool, dict[str, bool]]]] = field(default_factory=lambda: {False: [], True: []})
    baselines: list[float] = field(default_factory=list)
    audio_pairs: list[tuple[Audio, Audio, Audio, Audio]] = field(default_factory=list)
    subject_rows: dict[bool, list[tuple[Image, list[Image], Image, Image]]] = field(
        default_factory=lambda: {False: [], True: []}
    )

    def add(self, case: Any, answer: Message, heldout: bool, i: int) -> None:
        """Score one answer; keep what the audio and subject metrics need (targets rendered twice: the floor)."""
        self.name = case.name
        self.rows[heldout].append(score_answer(case, answer))
        render = np.random.default_rng([self.seed, self.run_index, i, int(heldout)])
        made = [p for p in answer.parts if isinstance(p, Audio)]
        if self.task in AUDIO_EDIT_TASKS and made and isinstance(case.expected[0], Sound):
            target, query = case.expected[0], case.messages[0].media[0]
            assert isinstance(query, Audio)
            self.audio_pairs.append((made[0], sound_part(target, render), sound_part(target, render), query))
        drawn = [p for p in answer.parts if isinstance(p, Image)]
        if self.task == SUBJECT_TASK and drawn and isinstance(case.expected[0], Picture):
            references = [m for m in case.messages[0].media if isinstance(m, Image)]
            asked = case.expected[0]
            self.subject_rows[heldout].append(
                (drawn[0], references, picture_part(asked, render), picture_part(asked, render))
            )
        if not heldout:
            copied = self.task in EDIT_TASKS
            self.baselines.append(float(score_answer(case, _copy_answer(case))[0]) if copied else _chance(case))

    def summary(self, cases: int, audio_features: Any) -> dict[str, Any]:
        """The row's entry in :func:`evaluate`'s result."""
        accuracy, attributes = _summarise(self.rows[False])
        heldout_accuracy, heldout_attributes = _summarise(self.rows[True])
        entry: dict[str, Any] = {
            "accuracy": accuracy,
            "heldout_items_accuracy": heldout_accuracy,
            "baseline": float(np.mean(self.baselines)),
            "baseline_kind": "copy_query" if self.task in EDIT_TASKS else "chance",
            "cases": cases,
            "errors": self.errors,
            "attribute_accuracy": attributes,
            "heldout_attribute_accuracy": heldout_attributes,
        }
        if len(self.audio_pairs) > 1:
            entry["audio_metrics"] = _audio_metrics(self.audio_pairs, audio_features)
        for heldout, key in ((False, "subject_metrics"), (True, "heldout_subject_metrics")):
            if self.subject_rows[heldout]:
                entry[key] = _subject_metrics(self.subject_rows[heldout])
        return entry


def evaluate(
    backend: Backend,
    *,
    cases: int = 50,
    tasks: Iterable[str] | None = None,
    shots: Sequence[int] = FULL_SHOTS,
    seed: int = 0,
    progress: bool = True,
    audio_features: Any = None,
) -> dict[str, Any]:
    """Score ``backend`` on the mini world's tasks.

    Each row's cases and seeds follow from ``seed`` and the row alone, not from which other rows run: a run of
    some tasks scores the cases a full run scores for them, and more ``cases`` extend the same cases.

    Args:
        audio_features: clips to features for the audio edits' KL and FD (default :func:`mini_audio_features`).

    Returns:
        ``{"model": ..., "cases": ..., "seed": ..., "tasks": {name: {"accuracy", "heldout_items_accuracy",
        "baseline", "baseline_kind", "cases", "attribute_accuracy", "heldout_attribute_accuracy"}}}``;
        in-context tasks are named by shots (``in_context_image_edit_2shot``); audio edits add
        ``"audio_metrics"``: ``lsd``, ``kl``, ``fd`` and each one's ``_render_floor`` and ``_copy_query``;
        subject-driven generation adds ``"subject_metrics"`` and ``"heldout_subject_metrics"``: ``dino``,
        ``clip_i``, ``clip_t``, each with its ``_render_floor`` and ``_copy_query``.
    """
    runs = _rows(list(tasks or TASKS), shots)
    result: dict[str, Any] = {"model": backend.capabilities.model, "cases": cases, "seed": seed, "tasks": {}}
    bar = tqdm(total=len(runs) * cases * 2, disable=not progress, desc="evaluate")
    for task, k in runs:
        scores = _RowScores(task, seed, _row_index(task, k))
        for heldout in (False, True):
            sampler = TaskSampler(np.random.default_rng([seed, scores.run_index, int(heldout)]), heldout=heldout)
            for i in range(cases):
                case = sampler.sample(task, shots=k)
                config = GenerationConfig(seed=seed * 100_003 + scores.run_index * 1009 + i)
                try:
                    answer = run_case(backend, case, config)
                except Codi2Error:  # e.g. a rambling answer that overflows the context: scored as wrong
                    scores.errors += 1
                    answer = assistant("")
                scores.add(case, answer, heldout, i)
                bar.update()
        result["tasks"][scores.name] = scores.summary(cases, audio_features or mini_audio_features)
    bar.close()
    return result
