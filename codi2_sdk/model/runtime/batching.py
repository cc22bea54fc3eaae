"""Running the same step of several generations in one forward: the LLM's prefill blocks and one-token steps, a
decoder's UNet calls.

Generations run in their own threads (a server's requests) but compute one at a time: each holds the
:class:`StepBatcher`'s lock while it works (:meth:`StepBatcher.computing`). At a batchable step it calls :meth:`StepBatcher.run`, which files
the step's input under a key (the kind of step and the shapes that must match) and waits, releasing the lock, so
the others can reach their own steps. A group of steps runs, all in one call, when it has ``max_batch_size``
members, or when every running generation waits for a step (nothing more can join). A generation between two
events (its reader busy with the last one) is waited for ``max_wait_ms`` at most.

Why a request's output does not depend on its company: batched CPU kernels give a row the same bits wherever it
sits in a batch of a given width and whatever the other rows hold, but not the same bits as a batch of another
width (``tools/bench/batch_invariance.py`` measures it). So every group runs at the full ``max_batch_size``
width, padded with copies of its first member, and attention, whose masked, padded form is not invariant,
runs row by row. A request alone runs the same padded calls, so batched and alone give the same bytes. (Not the
same bytes as a backend without batching: that one runs each step at width 1.)
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchStep", "StepBatcher", "current_batcher", "using_batcher"]


BatchStep = Callable[[list[Any], int], list[Any]]
"""Runs a group's items in one call padded to the width given, returning one result per item."""


_current: contextvars.ContextVar[StepBatcher | None] = contextvars.ContextVar("codi2_step_batcher", default=None)


def current_batcher() -> StepBatcher | None:
    """The batcher the running generation's steps go through (set by :func:`using_batcher`), or ``None``."""
    return _current.get()


@contextmanager
def using_batcher(batcher: StepBatcher | None) -> Iterator[None]:
    """Route the batchable steps run inside the block through ``batcher``."""
    token = _current.set(batcher)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass
class _Entry:
    item: Any
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class _Group:
    step: BatchStep
    since: float
    entries: list[_Entry] = field(default_factory=list)


class StepBatcher:
    """Groups the same step of concurrent generations into one call at a fixed width.

    Args:
        max_batch_size: the width every group runs at (its most members).
        max_wait_ms: the longest a step waits for a generation whose reader is busy with its last event.
    """

    def __init__(self, max_batch_size: int, max_wait_ms: float = 10.0) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.lock = threading.Condition()
        self._groups: dict[Hashable, _Group] = {}
        self._active = 0  # generations running (computing, waiting for a step, or between events)
        self._pending = 0  # generations waiting for the lock, to compute
        self._pending_lock = threading.Lock()
        self._waiting = 0
        self._woken = 0  # members of a group that ran, not yet back from waiting: they compute next
        self.calls = 0  # groups run, and the items in them: calls / items is the batching achieved
        self.items = 0

    @contextmanager
    def generation(self) -> Iterator[None]:
        """Count a generation as running (its steps are waited for) from its start to its end."""
        with self.lock:
            self._active += 1
        try:
            yield
        finally:
            with self.lock:
                self._active -= 1
                self.lock.notify_all()  # those left may all be waiting now

    @contextmanager
    def computing(self) -> Iterator[None]:
        """Hold the lock to compute. While a generation waits for it, steps wait for that generation too."""
        with self._pending_lock:
            self._pending += 1
        self.lock.acquire()
        with self._pending_lock:
            self._pending -= 1
        try:
            yield
        finally:
            self.lock.notify_all()  # it may now be between events: the waiters' deadline starts to count
            self.lock.release()

    def run(self, key: Hashable, step: BatchStep, item: Any) -> Any:
        """Run ``item`` through ``step`` with the other generations' items filed under ``key``; the caller is
        inside :meth:`computing`."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(step, time.monotonic())
        entry = _Entry(item)
        group.entries.append(entry)
        self._waiting += 1  # until its group runs (a member that has not woken yet is not waiting any more)
        while not entry.done:
            timeout = self._run_ready_groups()
            if not entry.done:
                self.lock.wait(timeout)
        self._woken -= 1
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _run_ready_groups(self) -> float | None:
        """Run the groups that may run now; return how long until one may (``None``: until something changes)."""
        while self._groups:
            key, oldest = min(self._groups.items(), key=lambda kv: kv[1].since)
            full = [k for k, group in self._groups.items() if len(group.entries) >= self.max_batch_size]
            if full:
                key = full[0]
            elif self._waiting < self._active:
                if self._pending or self._woken:
                    return None  # one is about to compute, and will reach a step or end
                left = oldest.since + self.max_wait - time.monotonic()
                if left > 0:
                    return left  # one is between events (its reader is busy): wait for it a little
            self._run_group(key)
        return None

    def _run_group(self, key: Hashable) -> None:
        group = self._groups.pop(key)
        self._waiting -= len(group.entries)
        self._woken += len(group.entries)
        self.calls += 1
        self.items += len(group.entries)
        try:
            results = group.step([e.item for e in group.entries], self.max_batch_size)
            for entry, result in zip(group.entries, results, strict=True):
                entry.result = result
        except BaseException as exc:  # every member's generation fails the same way
            for entry in group.entries:
                entry.error = exc
        for entry in group.entries:
            entry.done = True
        self.lock.notify_all()
