"""LocalBackend: a CoDi-2 model in this process (torch).

An unexpected exception inside generation (a bug, a device failure) is logged once with its traceback
and raised as :class:`~codi2_sdk.errors.ModelError`; the SDK's own errors pass through as they are.

One model serves one call at a time: a lock is held for the whole of a generation (a stream holds it
until it finishes or is closed), so concurrent threads and tasks queue instead of interleaving steps on
one KV cache. The async methods run the model in a worker thread, never on the event loop.

With ``max_batch_size`` above 1, concurrent generations run side by side instead, and their LLM prefill blocks and
one-token steps and their decoders' UNet calls are batched (:mod:`codi2_sdk.model.runtime.batching`): every such call runs at that width,
padded when fewer requests are there, so a request gives the same bytes alone and in company (at any thread
count). Those bytes are not the unbatched backend's: a width-1 call rounds differently.

The backend keeps the KV cache of recent prompts (``cache_mb``) and the features of recent media
(``media_cache_items``): a conversation's next turn prefills only what is new, and a picture seen before is
not encoded again. Answers are the same with the caches off (``cache_mb=0``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import torch

from ..errors import Codi2Error, ModelError
from ..events import Capabilities, Done, Event, GenerationRequest
from ..messages import Message
from ..model import CoDi2Model, generate_events
from ..model.generation import CompiledSteps
from ..model.runtime.batching import StepBatcher, current_batcher, using_batcher
from ..model.runtime.prefix_cache import MediaFeatureCache, PrefixCache
from .base import Backend

__all__ = ["LocalBackend"]

log = logging.getLogger("codi2_sdk.backends.local")


class LocalBackend(Backend):
    """Runs a :class:`~codi2_sdk.model.CoDi2Model` in-process.

    Args:
        model: the network.
        device: where to run it (``"cpu"``, ``"cuda"``, ...); ``None`` keeps it where it is.
        dtype: weights' dtype (``torch.bfloat16`` on a GPU, say); ``None`` keeps it.
        cache_mb: memory for the KV caches of recent prompts (least recently used go first); 0 turns it off.
        media_cache_items: how many media's encoder features to keep; 0 turns it off.
        max_batch_size: how many concurrent generations' steps run in one forward; 1 (the default) runs one
            generation at a time.
        max_wait_ms: with batching, the longest a step waits for a generation whose reader is busy with an event.
        merge_lora: fold the model's LoRA into its LLM's weights first, for serving (faster decoding, the same answers
            within float tolerance; see :meth:`~codi2_sdk.model.CoDi2Model.merge_lora`).
        compile: decode one token at a time compiled over a static cache (``torch.compile``; CUDA graphs on a GPU),
            the LoRA merged first. The first request compiles (tens of seconds on a CPU); a prompt prefix the cache
            holds is copied into the static cache; batched steps (``max_batch_size`` above 1) stay eager.
        compile_decoders: the decoders' UNets through ``torch.compile``; the first decode of each size compiles
            (see :meth:`~codi2_sdk.model.CoDi2Model.speed_up_decoders`).
        channels_last: the decoders' convolutions in channels-last layout (faster on a GPU's tensor cores, often
            slower on a CPU).
    """

    def __init__(
        self,
        model: CoDi2Model,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        cache_mb: float = 256.0,
        media_cache_items: int = 512,
        max_batch_size: int = 1,
        max_wait_ms: float = 10.0,
        merge_lora: bool = False,
        compile: bool = False,
        compile_decoders: bool = False,
        channels_last: bool = False,
    ):
        if merge_lora or compile:
            model.merge_lora()
        model.speed_up_decoders(compile=compile_decoders, channels_last=channels_last)
        if device is not None:
            model = model.to(device=device)
        if dtype is not None:
            model = model.to(dtype=dtype)
        self.model = model.eval()
        self.batcher = StepBatcher(max_batch_size, max_wait_ms) if max_batch_size > 1 else None
        self._lock = self.batcher.lock if self.batcher is not None else threading.Lock()
        self.prefix_cache = PrefixCache(cache_mb) if cache_mb > 0 else None
        self.media_cache = MediaFeatureCache(media_cache_items) if media_cache_items > 0 else None
        self.compiled = CompiledSteps(self.model) if compile else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "codi2-mini",
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        cache_mb: float = 256.0,
        media_cache_items: int = 512,
        max_batch_size: int = 1,
        max_wait_ms: float = 10.0,
        merge_lora: bool = False,
        compile: bool = False,
        compile_decoders: bool = False,
        channels_last: bool = False,
    ) -> LocalBackend:
        """Load a checkpoint folder, or one shipped in the package by name (default: codi2-mini), with the
        constructor's settings (``merge_lora`` folds its LoRA into the LLM's weights for serving, and so on)."""
        model = CoDi2Model.from_pretrained(name_or_path, device=device, dtype=dtype)
        return cls(
            model,
            cache_mb=cache_mb,
            media_cache_items=media_cache_items,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            merge_lora=merge_lora,
            compile=compile,
            compile_decoders=compile_decoders,
            channels_last=channels_last,
        )

    def clear_caches(self) -> None:
        """Forget the cached KV prefixes and media features. Call it after changing the model's weights in place
        (fine-tuning it, loading an adapter): the caches hold what the old weights computed."""
        with self._lock:
            if self.prefix_cache is not None:
                self.prefix_cache.clear()
            if self.media_cache is not None:
                self.media_cache.clear()

    @property
    def capabilities(self) -> Capabilities:
        model = self.model
        return Capabilities(
            model=model.name,
            input_modalities=["text", *sorted(model.encoders)],  # type: ignore[list-item]
            output_modalities=["text", *sorted(model.decoders)],  # type: ignore[list-item]
            context_length=getattr(model.llm.config, "max_position_embeddings", None),
            defaults=model.config.defaults,
            vocabulary=model.prompts.vocabulary if model.config.closed_vocabulary else None,
            prompt_examples=model.config.prompt_examples,
        )

    def generate(self, request: GenerationRequest) -> Message:
        for event in self.stream(request):
            if isinstance(event, Done):
                return event.message
        raise AssertionError("generation ended without a Done event")  # generate_events always ends with Done

    def stream(self, request: GenerationRequest) -> Iterator[Event]:
        self.check_request(request)
        if self.batcher is None:
            with self._lock:
                yield from self._events(request)
            return
        # Side by side: the batcher's lock is held only while this generation computes, never while its
        # reader handles an event.
        batcher, events = self.batcher, self._events(request)
        with batcher.generation():
            try:
                while True:
                    with batcher.computing(), using_batcher(batcher):
                        event = next(events, None)
                    if event is None:
                        return
                    yield event
            finally:
                with batcher.computing():
                    events.close()

    def _events(self, request: GenerationRequest) -> Generator[Event, None, None]:
        try:
            yield from generate_events(
                self.model,
                request,
                prefix_cache=self.prefix_cache,
                media_cache=self.media_cache,
                compiled=self.compiled if current_batcher() is None else None,
            )
        except Codi2Error:
            raise
        except Exception as exc:  # a bug or a device failure, not the caller's fault: say so once
            log.exception("generation failed")
            raise ModelError(f"the model failed on this request ({type(exc).__name__}: {exc})") from exc

    def __repr__(self) -> str:
        return f"LocalBackend({self.model.name!r}, device={self.model.device})"
