"""Reusing the LLM's work across requests: a prompt-prefix KV cache and a media feature cache.

A conversation's turn N+1 prompt starts with turn N's whole prompt (the SDK's template and chat templates
only append), and requests that share in-context examples and a system text share their beginning. The
:class:`PrefixCache` keeps the KV cache of recent prompts (least recently used out first, bounded in
bytes); a new prompt that starts like one of them prefills only the rest.

Outputs stay identical with and without it: prompts are always prefilled in blocks of the model's
``prefill_block`` tokens (:class:`~codi2_sdk.model.architecture.CoDi2Config`) at fixed positions, and a cache is reused
only up to a block boundary, so the same computation produces every reused key and value. A prompt's identity is its token ids with each media slot standing for
its medium's content hash (:func:`prompt_signature`).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

Signature = tuple[Any, ...]
"""A prompt's identity: its token ids, each media slot token standing for its medium's content."""

__all__ = ["MediaFeatureCache", "PrefixCache"]


def _common_prefix(a: Signature, b: Signature) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _cache_bytes(cache: Any) -> int:
    return sum(
        t.numel() * t.element_size()
        for layer in cache.layers
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
        if isinstance(t, torch.Tensor)
    )


@dataclass
class _Entry:
    signature: Signature
    cache: Any
    nbytes: int


class PrefixCache:
    """KV caches of recent prompts, reused by prompts that extend them.

    Args:
        max_mb: the most memory the kept caches may take (least recently used go first).
    """

    def __init__(self, max_mb: float = 256.0) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self._entries: OrderedDict[Signature, _Entry] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, signature: Signature, block: int) -> tuple[int, Any]:
        """The longest reusable prefix, a multiple of ``block`` tokens: ``(tokens, a private copy of the KV cache
        cut to them)``, or ``(0, None)``. At least the prompt's last token is left to feed (its logits start
        the answer)."""
        best, found = 0, None
        for entry in self._entries.values():
            reusable = min(_common_prefix(entry.signature, signature), len(signature) - 1)
            reusable -= reusable % block
            if reusable > best:
                best, found = reusable, entry
        if found is None:
            return 0, None
        self._entries.move_to_end(found.signature)
        cache = copy.deepcopy(found.cache)
        excess = cache.get_seq_length() - best
        if excess > 0:
            cache.crop(-excess)  # transformers' crop takes the count to remove
        self.hits += 1
        self.reused_tokens += best
        return best, cache

    def __contains__(self, signature: object) -> bool:
        return signature in self._entries

    def store(self, signature: Signature, cache: Any, *, copied: bool = False) -> None:
        """Keep a copy of the KV cache of a whole prompt (just prefilled, nothing generated yet); with ``copied``,
        ``cache`` is already a private copy and is kept as it is."""
        if signature in self._entries:
            self._entries.move_to_end(signature)
            return
        nbytes = _cache_bytes(cache)
        if nbytes > self.max_bytes:
            return
        self._entries[signature] = _Entry(signature, cache if copied else copy.deepcopy(cache), nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0


class MediaFeatureCache:
    """Encoder features of recent media, by modality and content hash (least recently used out first)."""

    def __init__(self, max_items: int = 512) -> None:
        self.max_items = max_items
        self._features: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.hits = 0

    def get(self, modality: str, sha256: str) -> torch.Tensor | None:
        feature = self._features.get((modality, sha256))
        if feature is not None:
            self._features.move_to_end((modality, sha256))
            self.hits += 1
        return feature

    def clear(self) -> None:
        """Forget every feature."""
        self._features.clear()

    def put(self, modality: str, sha256: str, feature: torch.Tensor) -> None:
        self._features[(modality, sha256)] = feature
        while len(self._features) > self.max_items:
            self._features.popitem(last=False)
