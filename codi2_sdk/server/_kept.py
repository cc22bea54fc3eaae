"""What the server keeps for its callers between requests (responses for ``previous_response_id``, video jobs)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["KeptPerCaller"]

Item = TypeVar("Item")


@dataclass
class _Entry(Generic[Item]):
    owner: str
    item: Item
    size: int


class KeptPerCaller(Generic[Item]):
    """Things kept between requests by id, each reachable only by the caller that made it (the hash of its key),
    at most ``max_items`` of them and ``max_bytes`` in all. One that is ``expired`` is forgotten when the store is
    next used; room is made by forgetting the oldest that ``may_go`` (a running job may not), and where none may,
    the new one is not kept. Thread-safe."""

    def __init__(
        self,
        max_items: int,
        max_bytes: float = math.inf,
        *,
        expired: Callable[[Item], bool],
        may_go: Callable[[Item], bool] = lambda item: True,
    ) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._expired, self._may_go = expired, may_go
        self._entries: OrderedDict[str, _Entry[Item]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def put(self, owner: str, key: str, item: Item, size: int = 0) -> bool:
        """Keep ``item`` under ``key`` for ``owner``; ``False`` when it cannot be kept (too big, or no room)."""
        if self.max_items == 0 or size > self.max_bytes:
            return False
        with self._lock:
            self._forget_expired()
            self._entries[key] = _Entry(owner, item, size)
            self._bytes += size
            while len(self._entries) > self.max_items or self._bytes > self.max_bytes:
                victim = next((k for k, e in self._entries.items() if k != key and self._may_go(e.item)), None)
                self._drop(key if victim is None else victim)
                if victim is None:
                    return False
            return True

    def get(self, owner: str, key: str) -> Item | None:
        """The caller's item, or ``None`` (unknown, expired, or another caller's)."""
        with self._lock:
            self._forget_expired()
            entry = self._entries.get(key)
        return entry.item if entry is not None and entry.owner == owner else None

    def of(self, owner: str) -> list[Item]:
        """The caller's items, oldest first."""
        with self._lock:
            self._forget_expired()
            return [entry.item for entry in self._entries.values() if entry.owner == owner]

    def delete(self, owner: str, key: str) -> Item | None:
        """Forget the caller's item; returns it, or ``None`` where the caller has no such item."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.owner != owner:
                return None
            self._drop(key)
            return entry.item

    def _forget_expired(self) -> None:
        for key in [k for k, e in self._entries.items() if self._expired(e.item)]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size
