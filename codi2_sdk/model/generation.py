"""The generation loop: a request in, a stream of events out, one KV cache throughout.

:func:`generate_events` is a short sequence of named steps:

1. settle the settings (:func:`effective_config`) and the seed;
2. prefill the prompt (:func:`prefill`) in blocks of the model's ``prefill_block`` tokens, starting after the longest prefix a :class:`~codi2_sdk.model.runtime.prefix_cache.PrefixCache` holds (a
   conversation's earlier turns, shared examples), with media features from a feature cache;
3. pick tokens one at a time (:class:`TokenPicker`: greedy, or temperature and top-p with transformers'
   logits warpers and a seeded ``torch.Generator``; tags that may not be written are masked);
4. text tokens are streamed as text deltas (:class:`_TextRun`);
5. at a media start tag the model writes the medium (:func:`write_medium`: the feature is predicted, fed back into its slot
   so everything after it conditions on it, and the end tag is forced), and the decoder turns the feature
   into the finished part right away, with a progress event per diffusion step (:func:`decode_medium`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from transformers import (
    AttentionInterface,
    DynamicCache,
    LogitsProcessorList,
    StaticCache,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ..config import GenerationConfig
from ..content import MediaModality, Part, Provenance, Text
from ..errors import InvalidRequestError
from ..events import Done, Event, GenerationRequest, MediaDone, Progress, TextDelta
from ..messages import Message
from .modeling import CoDi2Model
from .prompt import prompt_signature
from .runtime.batching import current_batcher
from .runtime.prefix_cache import MediaFeatureCache, PrefixCache

__all__ = [
    "LLMState",
    "TokenPicker",
    "decode_medium",
    "effective_config",
    "feed_together",
    "generate_events",
    "prefill",
]


DEFAULT_MAX_NEW_TOKENS = 256


_TAIL = 3  # room kept free in the context: a medium's start tag, slot and end tag


def effective_config(model: CoDi2Model, config: GenerationConfig) -> GenerationConfig:
    """``config`` with every ``None`` filled from the model's defaults."""
    defaults = model.config.defaults
    data = config.model_dump()
    for section in config.sections():
        fallback = defaults.settings_for(section).model_dump()
        data[section] = {k: (v if v is not None else fallback.get(k)) for k, v in data[section].items()}
    if data["text"]["max_new_tokens"] is None:
        data["text"]["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    return GenerationConfig.model_validate(data)


def _keys_and_values(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's key and value tensors of a transformers cache (attention layers only, as Llama's are)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


class CompiledSteps:
    """The fast decode path: the LLM's one-token steps compiled with ``torch.compile`` (CUDA graphs on a GPU,
    ``mode="reduce-overhead"``) over one ``StaticCache`` sized to the context, reset for each request.

    For one request at a time: a server's batched steps work on growing caches and stay eager. A prompt prefix the
    prefix cache holds is copied in (:meth:`fresh_cache`), and a prefilled prompt copied out for it to keep
    (:meth:`prompt_cache`). Compiling takes a while
    on the first request (tens of seconds for a small model on a CPU), once per kind of step. Greedy answers are
    the eager path's (tested on the full-scale twin); sampled ones agree within float tolerance.
    """

    def __init__(self, model: CoDi2Model) -> None:
        self.model = model
        self.limit = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0)
        if not self.limit:
            raise InvalidRequestError("compiled decoding needs the LLM's context length (max_position_embeddings)")
        mode = "reduce-overhead" if model.device.type == "cuda" else None
        self.step = torch.compile(model.llm, mode=mode, dynamic=False)
        self.cache = StaticCache(config=model.llm.config, max_cache_len=self.limit)

    def fresh_cache(self, prefix: DynamicCache | None = None) -> StaticCache:
        """The static cache, emptied for a new request, holding ``prefix``'s keys and values first where given."""
        self.cache.reset()
        for index, (keys, values) in enumerate(_keys_and_values(prefix) if prefix is not None else []):
            self.cache.update(keys, values, index)
        return self.cache

    def prompt_cache(self, length: int) -> DynamicCache:
        """The static cache's first ``length`` positions, copied into a dynamic cache (for the prefix cache)."""
        cache = DynamicCache(config=self.model.llm.config)
        for index, (keys, values) in enumerate(_keys_and_values(self.cache)):
            cache.update(keys[:, :, :length].clone(), values[:, :, :length].clone(), index)
        return cache


class LLMState:
    """The LLM's cache and its latest logits (and, where asked, the last layer's hidden state)."""

    def __init__(self, model: CoDi2Model, compiled: CompiledSteps | None = None) -> None:
        self.model = model
        self.compiled = compiled
        self.cache: Any = compiled.fresh_cache() if compiled is not None else DynamicCache(config=model.llm.config)
        self.length = 0
        self.limit = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0) or None
        self.logits: torch.Tensor = torch.empty(0)
        self.hidden: torch.Tensor = torch.empty(0)

    @property
    def full(self) -> bool:
        """Whether the context has no room left for a medium."""
        return self.limit is not None and self.length + _TAIL > self.limit

    def feed(self, embeds: torch.Tensor, *, keep_hidden: bool = False) -> None:
        """Feed ``(1, n, hidden)`` embeddings; keep the last position's logits (the only ones computed) and, with
        ``keep_hidden`` (at a media start tag), its last-layer hidden state."""
        n = embeds.shape[1]
        span = torch.arange(self.length, self.length + n, device=embeds.device)
        extra: dict[str, Any] = {"output_hidden_states": True} if keep_hidden else {}
        forward = self.model.llm
        if self.compiled is not None:
            extra["cache_position"] = span  # where the static cache writes
            forward = self.compiled.step if n == 1 else forward
        out = forward(
            inputs_embeds=embeds, cache=self.cache, position_ids=span[None], use_cache=True, logits_to_keep=1, **extra
        )
        self.length += n
        self.logits = out.logits[0, -1].float()
        if keep_hidden:
            self.hidden = out.hidden_states[-1][0, -1]

    def feed_blocks(self, embeds: torch.Tensor) -> None:
        """Feed ``(1, n, hidden)`` embeddings in blocks that end at multiples of the model's ``prefill_block``
        (absolute positions), so a prompt's keys and values are computed the same way whatever prefix was reused.
        With a :class:`~codi2_sdk.model.runtime.batching.StepBatcher` in use, each block goes with other generations'."""
        block = self.model.config.prefill_block
        start = 0
        while start < embeds.shape[1]:
            end = min(embeds.shape[1], start + block - (self.length % block))
            self._feed_maybe_together(embeds[:, start:end], block)
            start = end

    def feed_one(self, embeds: torch.Tensor, *, keep_hidden: bool = False) -> None:
        """Feed one position's ``(1, 1, hidden)`` embedding (with other generations' when batching)."""
        self._feed_maybe_together(embeds, 1, keep_hidden=keep_hidden)

    def feed_token(self, token: int, *, keep_hidden: bool = False) -> None:
        ids = torch.tensor([[token]], device=self.model.device)
        self.feed_one(self.model.llm.get_input_embeddings()(ids), keep_hidden=keep_hidden)

    def _feed_maybe_together(self, embeds: torch.Tensor, span: int, *, keep_hidden: bool = False) -> None:
        batcher = current_batcher()
        if batcher is None:
            self.feed(embeds, keep_hidden=keep_hidden)
        else:  # blocks and single steps go in separate groups: a step padded to a block's span would cost its span
            batcher.run(("llm", id(self.model), embeds.dtype, span), feed_together, (self, embeds, span))


class _Rows(list):
    """Per-row tensors of a batch whose rows differ in length, and how many positions each row feeds."""

    def __init__(self, tensors: list[torch.Tensor], fed: list[int], past: list[int]) -> None:
        super().__init__(tensors)
        self.fed, self.past = fed, past


class _RowCaches:
    """The KV caches of a batch's rows, each its own length: the LLM's cache in :func:`feed_together`. Each row's
    new keys and values (its fed positions, not the padding) go to its own cache; attention then gets each row's
    whole keys and values (:class:`_Rows`)."""

    def __init__(self, caches: list[DynamicCache], fed: list[int], past: list[int]) -> None:
        """``fed`` and ``past`` (positions fed now, and before) have an entry per row, padding rows included; the
        padding rows (beyond ``caches``) attend like the first, and are dropped."""
        self.caches, self.fed, self.past = caches, fed, past

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple:
        rows = [
            cache.update(keys[i : i + 1, :, :n], values[i : i + 1, :, :n], layer_idx)
            for i, (cache, n) in enumerate(zip(self.caches, self.fed, strict=False))
        ]
        rows += [rows[0]] * (len(self.fed) - len(rows))
        return _Rows([k for k, _ in rows], self.fed, self.past), _Rows([v for _, v in rows], self.fed, self.past)


def _attention_by_row(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: _Rows,
    value: _Rows,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Each row's fed positions against that row's own keys, causally; padding positions give zeros. No row's
    attention is padded to another's length, so no row depends on another."""
    span = query.shape[2]
    rows = []
    for i, (k, v) in enumerate(zip(key, value, strict=True)):
        n, past = key.fed[i], key.past[i]
        mask = None
        if n > 1:
            mask = (
                torch.arange(past + n, device=query.device)[None]
                <= (past + torch.arange(n, device=query.device))[:, None]
            )
            mask = mask[None, None]
        out = sdpa_attention_forward(
            module, query[i : i + 1, :, :n], k, v, mask, dropout=dropout, scaling=scaling, is_causal=False
        )[0]
        rows.append(torch.nn.functional.pad(out, (0, 0, 0, 0, 0, span - n)))
    return torch.cat(rows), None


_ROW_ATTENTION = "codi2_attention_by_row"


AttentionInterface.register(_ROW_ATTENTION, _attention_by_row)


def feed_together(items: list[tuple[LLMState, torch.Tensor, int]], width: int) -> list[None]:
    """Feed several generations' LLM states their ``(1, n, hidden)`` embeddings (``n`` at most the items' span) in
    one forward of ``width`` rows of ``span`` positions, padded (the :class:`~codi2_sdk.model.runtime.batching.StepBatcher`'s
    step for the LLM)."""
    pad = width - len(items)  # padding rows repeat the first
    states = [state for state, _, _ in items]
    fed = [embeds.shape[1] for _, embeds, _ in items] + [items[0][1].shape[1]] * pad
    starts = [s.length for s in states] + [states[0].length] * pad
    span = items[0][2]
    model = states[0].model
    rows = [torch.nn.functional.pad(embeds, (0, 0, 0, span - embeds.shape[1])) for _, embeds, _ in items]
    embeds = torch.cat(rows + [rows[0]] * pad)
    positions = torch.tensor(starts, device=embeds.device)[:, None] + torch.arange(span, device=embeds.device)
    config = model.llm.config
    previous = config._attn_implementation
    config._attn_implementation = _ROW_ATTENTION  # for this call only; the batcher's lock keeps others out
    try:
        out = model.llm(
            inputs_embeds=embeds,
            cache=_RowCaches([s.cache for s in states], fed, starts),
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
        )
    finally:
        config._attn_implementation = previous
    for i, (state, n) in enumerate(zip(states, fed, strict=False)):
        state.length += n
        state.logits = out.logits[i, n - 1].float()
        state.hidden = out.hidden_states[-1][i, n - 1]
    return [None] * len(items)


def prefill(
    model: CoDi2Model,
    request: GenerationRequest,
    *,
    prefix_cache: PrefixCache | None = None,
    media_cache: MediaFeatureCache | None = None,
    compiled: CompiledSteps | None = None,
) -> LLMState:
    """Build the request's prompt and run it through the LLM, after the longest prefix ``prefix_cache`` holds
    (into ``compiled``'s static cache instead, where given)."""
    prompt = model.build_prompt(request.examples, request.messages)
    state = LLMState(model, compiled)
    if state.limit and len(prompt) + _TAIL > state.limit:
        raise InvalidRequestError(
            f"the prompt takes {len(prompt)} tokens (media included); {model.name} attends to at most {state.limit}"
        )
    signature = prompt_signature(prompt)
    reused = 0
    if prefix_cache is not None:
        reused, cache = prefix_cache.lookup(signature, model.config.prefill_block)
        if cache is not None:
            state.cache = compiled.fresh_cache(cache) if compiled is not None else cache
            state.length = reused
    embeds = model.embed([prompt], one_by_one=True, media_cache=media_cache).embeds
    state.feed_blocks(embeds[:, reused:])
    if prefix_cache is not None:
        if compiled is None:
            prefix_cache.store(signature, state.cache)
        elif signature not in prefix_cache:  # the static cache's prompt positions, copied out once
            prefix_cache.store(signature, compiled.prompt_cache(state.length), copied=True)
    return state


class TokenPicker:
    """Chooses each next token: masks what may not be written, then greedy or seeded sampling."""

    def __init__(self, model: CoDi2Model, config: GenerationConfig, generator: torch.Generator) -> None:
        builder, tokenizer = model.prompts, model.tokenizer
        banned = {builder.slot_id, *builder.close_ids.values(), *builder.role_ids.values()}
        banned |= {builder.start_ids[m] for m in builder.start_ids if m not in model.decoders}
        banned |= {t for t in (tokenizer.pad_token_id, tokenizer.bos_token_id) if t is not None}
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            banned.add(tokenizer.unk_token_id)
        self.banned = torch.tensor(sorted(banned), dtype=torch.long, device=model.device)
        self.start_ids = torch.tensor(sorted(builder.start_ids.values()), device=model.device)
        self.output_modality = config.output_modality
        self.forced = builder.start_ids.get(config.output_modality) if config.output_modality != "auto" else None
        self.generator = generator
        self.greedy = config.text.temperature == 0.0
        self.warpers = LogitsProcessorList()
        if not self.greedy:
            self.warpers.append(TemperatureLogitsWarper(config.text.temperature))
            if config.text.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(config.text.top_p))

    def pick(self, logits: torch.Tensor, step: int) -> int:
        """The token to write at ``step`` given the LLM's ``logits``."""
        if self.forced is not None:
            token, self.forced = self.forced, None
            return int(token)
        logits = logits.clone()
        logits[self.banned] = float("-inf")
        if self.output_modality == "text":  # a text-only answer never opens a medium
            logits[self.start_ids] = float("-inf")
        if self.greedy:
            return int(torch.argmax(logits))
        # In float64 (float32 rounds a temperature of 1e-300 to 0) and shifted so the best token scores 0:
        # dividing by any admitted temperature then gives 0, negative numbers or -inf, never NaN.
        shifted = (logits.double() - logits.max().double())[None]
        scores = self.warpers(None, shifted)  # type: ignore[arg-type]
        return int(torch.multinomial(torch.softmax(scores, dim=-1).cpu(), 1, generator=self.generator))


class _TextRun:
    """The text part being written: streams what is settled, and closes into a :class:`Text` part."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.written = ""  # the decoded text of ``ids``
        self.emitted = ""  # how much was streamed (a decode can still change its tail, e.g. around punctuation)

    def add(self, token: int) -> Iterator[TextDelta]:
        self.ids.append(token)
        self.written = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        yield from self._flush()

    def _flush(self) -> Iterator[TextDelta]:
        if self.written.startswith(self.emitted) and len(self.written) > len(self.emitted):
            yield TextDelta(text=self.written[len(self.emitted) :])
            self.emitted = self.written

    def close(self, parts: list[Part]) -> Iterator[TextDelta]:
        """Stream the rest and append the run to ``parts`` (unless blank); start a new run."""
        yield from self._flush()
        if self.written.strip():
            parts.append(Text(self.written))
        self.ids, self.written, self.emitted = [], "", ""


def write_medium(model: CoDi2Model, state: LLMState, modality: str) -> torch.Tensor:
    """Write a medium into the LLM's context at the current position, as the paper's model does.

    The start tag is fed and the output head reads its hidden state; the predicted feature (scale restored) is
    fed back through the input projector into the medium's slot, so what comes after conditions on it (the
    reference code drops it); then the end tag is fed. Returns the feature, for the decoder.
    """
    state.feed_token(model.prompts.start_ids[modality], keep_hidden=True)
    feature = model.restore_scale(modality, model.predict_feature(modality, state.hidden))
    embed_dtype = model.llm.get_input_embeddings().weight.dtype
    state.feed_one(model.feature_to_input(modality, feature)[None, None].to(embed_dtype))
    state.feed_token(model.prompts.close_ids[modality])
    return feature


def decode_medium(
    model: CoDi2Model, modality: MediaModality, feature: torch.Tensor, index: int, config: GenerationConfig, seed: int
) -> Iterator[Progress | MediaDone]:
    """Decode one medium of the answer: a progress event per diffusion step, then the finished part (with
    ``candidates`` above 1, the sample nearest the LLM's feature, see :meth:`CoDi2Model.nearest_sample`)."""
    settings: Any = config.settings_for(modality)  # the medium's sub-config: steps, guidance, size or duration
    candidates = int(settings.candidates or 1)
    generator = torch.Generator(device="cpu").manual_seed(seed + 1 + index)
    provenance = Provenance(model=model.name, seed=seed, candidates=candidates)
    total = int(settings.steps or 1)
    with model.decoder_ready(modality) as decoder:
        device = next(decoder.parameters()).device
        run = decoder.iter_decode(
            feature[None].expand(candidates, -1).to(device), settings, generator=generator, provenance=provenance
        )
        while True:
            try:
                step = next(run)
            except StopIteration as done:
                samples = done.value
                break
            yield Progress(modality=modality, part_index=index, step=step, total=total)
    best = model.nearest_sample(modality, feature, samples) if len(samples) > 1 else 0
    yield MediaDone(part_index=index, part=samples[best])


@torch.no_grad()
def generate_events(
    model: CoDi2Model,
    request: GenerationRequest,
    *,
    prefix_cache: PrefixCache | None = None,
    media_cache: MediaFeatureCache | None = None,
    compiled: CompiledSteps | None = None,
) -> Iterator[Event]:
    """Answer ``request``: text deltas, diffusion progress and finished media as they come, then :class:`Done`.

    Closing the iterator stops the work at the next token or diffusion step. The caches (optional) only save
    work: the events are the same with or without them. ``compiled`` runs the one-token steps compiled over a
    static cache (:class:`CompiledSteps`).
    """
    config = effective_config(model, request.config)
    for medium in model.decoders:
        candidates = config.settings_for(medium).candidates  # type: ignore[union-attr]
        if (candidates or 1) > 1 and medium not in model.encoders:
            raise InvalidRequestError(
                f"{medium}.candidates={candidates} needs an encoder for {medium} to rank the samples, and "
                f"{model.name} has none; use {medium}.candidates=1"
            )
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(6), "little")
    picker = TokenPicker(model, config, torch.Generator(device="cpu").manual_seed(seed))
    state = prefill(model, request, prefix_cache=prefix_cache, media_cache=media_cache, compiled=compiled)
    builder = model.prompts
    parts: list[Part] = []
    text = _TextRun(model.tokenizer)
    for step in range(config.text.max_new_tokens or DEFAULT_MAX_NEW_TOKENS):
        if state.full:
            break
        token = picker.pick(state.logits, step)
        if token == builder.end_id:
            break
        modality = builder.modality_of_start.get(token)
        if modality is None:
            yield from text.add(token)
            state.feed_token(token)
            continue
        yield from text.close(parts)
        feature = write_medium(model, state, modality)
        for event in decode_medium(model, modality, feature, len(parts), config, seed):  # type: ignore[arg-type]
            if isinstance(event, MediaDone):
                parts.append(event.part)
            yield event
    yield from text.close(parts)
    yield Done(message=Message(role="assistant", parts=parts))
