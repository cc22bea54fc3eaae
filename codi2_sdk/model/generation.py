"""The generation loop: a request in, a stream of events out, one KV cache throughout.

Each step feeds one input embedding to the LLM with its key/value cache. Text tokens are sampled
(greedy, or temperature and top-p with transformers' logits warpers and a seeded ``torch.Generator``).
When the LLM writes a media start tag:

1. the start tag is fed, and the output head turns its hidden state into the medium's feature;
2. the feature (scale restored) is fed back through the input projector into the slot, so everything
   after it conditions on it (the reference code drops it);
3. the end tag is forced, and text generation goes on;
4. the medium is decoded by its diffusion decoder right away, with a progress event per step.

The prompt is prefilled in one call (:func:`prefill`), so a later version can keep a conversation's
prefix cache between turns and prefill only the new turn.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import DynamicCache, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from ..backends.base import Done, Event, GenerationRequest, MediaDone, Progress, TextDelta
from ..config import GenerationConfig
from ..content import Audio, Image, Provenance, Text
from ..errors import InvalidRequestError
from ..messages import Message
from .modeling import CoDi2Model

__all__ = ["effective_config", "generate_events", "prefill"]

DEFAULT_MAX_NEW_TOKENS = 256


def effective_config(model: CoDi2Model, config: GenerationConfig) -> GenerationConfig:
    """``config`` with every ``None`` filled from the model's defaults."""
    defaults = model.config.defaults
    data = config.model_dump()
    for section in ("text", "image", "audio"):
        fallback = getattr(defaults, section).model_dump()
        data[section] = {k: (v if v is not None else fallback.get(k)) for k, v in data[section].items()}
    if data["text"]["max_new_tokens"] is None:
        data["text"]["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    return GenerationConfig.model_validate(data)


class _LLMState:
    """The LLM's cache and its latest logits and hidden state."""

    def __init__(self, model: CoDi2Model) -> None:
        self.model = model
        self.cache = DynamicCache(config=model.llm.config)
        self.length = 0
        self.logits: torch.Tensor = torch.empty(0)
        self.hidden: torch.Tensor = torch.empty(0)

    def feed(self, embeds: torch.Tensor) -> None:
        """Feed ``(1, n, hidden)`` embeddings; keep the last position's logits and hidden state."""
        n = embeds.shape[1]
        positions = torch.arange(self.length, self.length + n, device=embeds.device)[None]
        out = self.model.llm(
            inputs_embeds=embeds,
            cache=self.cache,
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
        )
        self.length += n
        self.logits = out.logits[0, -1].float()
        self.hidden = out.hidden_states[-1][0, -1]

    def feed_token(self, token: int) -> None:
        ids = torch.tensor([[token]], device=self.model.device)
        self.feed(self.model.llm.get_input_embeddings()(ids))


def prefill(model: CoDi2Model, request: GenerationRequest) -> _LLMState:
    """Build the request's prompt and run it through the LLM in one call."""
    try:
        prompt = model.prompts.build(request.examples, request.messages)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    limit = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0)
    if limit and len(prompt) + 3 > limit:
        raise InvalidRequestError(
            f"the prompt takes {len(prompt)} tokens (media included); {model.name} attends to at most {limit}"
        )
    state = _LLMState(model)
    state.feed(model.embed([prompt]).embeds)
    return state


def _banned_tokens(model: CoDi2Model) -> torch.Tensor:
    builder = model.prompts
    banned = {builder.slot_id, *builder.close_ids.values(), *builder.role_ids.values()}
    banned |= {builder.start_ids[m] for m in builder.start_ids if m not in model.decoders}
    banned |= {t for t in (model.tokenizer.pad_token_id, model.tokenizer.bos_token_id) if t is not None}
    if model.tokenizer.unk_token_id is not None and model.tokenizer.unk_token_id != model.tokenizer.eos_token_id:
        banned.add(model.tokenizer.unk_token_id)
    return torch.tensor(sorted(banned), dtype=torch.long)


def _pick(logits: torch.Tensor, warpers: LogitsProcessorList, greedy: bool, generator: torch.Generator) -> int:
    if greedy:
        return int(torch.argmax(logits))
    scores = warpers(None, logits[None])  # type: ignore[arg-type]
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _decode_medium(
    model: CoDi2Model,
    modality: str,
    feature: torch.Tensor,
    index: int,
    config: GenerationConfig,
    seed: int,
) -> Iterator[Event | Image | Audio]:
    """Yield progress events while decoding, then the finished part."""
    settings = config.image if modality == "image" else config.audio
    steps, guidance = int(settings.steps or 1), float(settings.guidance_scale or 1.0)
    decoder: Any = model.decoders[modality]
    generator = torch.Generator(device="cpu").manual_seed(seed + 1 + index)
    device = next(decoder.parameters()).device
    noise_level = getattr(settings, "noise_level", None)  # unCLIP decoders' option; others ignore it
    run = decoder.iter_sample(
        feature[None].to(device), steps=steps, guidance_scale=guidance, generator=generator, noise_level=noise_level
    )
    while True:
        try:
            step = next(run)
        except StopIteration as done:
            outputs = done.value
            break
        yield Progress(modality=modality, part_index=index, step=step, total=steps)  # type: ignore[arg-type]
    part = decoder.to_media(outputs, generator=generator)[0]
    provenance = Provenance(model=model.name, seed=seed, steps=steps, guidance_scale=guidance, noise_level=noise_level)
    if isinstance(part, Image):
        if config.image.size is not None and (part.width, part.height) != (config.image.size,) * 2:
            resized = part.to_pil().resize((config.image.size,) * 2, PIL.Image.Resampling.BICUBIC)
            part = Image.from_pil(resized)
        yield Image.from_bytes(part.data, provenance=provenance)
    else:
        samples = part.to_numpy()
        assert part.sample_rate is not None
        if config.audio.duration is not None:
            n = round(config.audio.duration * part.sample_rate)
            samples = samples[:n] if len(samples) >= n else np.pad(samples, (0, n - len(samples)))
        yield Audio.from_array(samples, sample_rate=part.sample_rate, provenance=provenance)


@torch.no_grad()
def generate_events(model: CoDi2Model, request: GenerationRequest) -> Iterator[Event]:
    """Answer ``request``: text deltas, diffusion progress and finished media as they come, then :class:`Done`.

    Closing the iterator stops the work at the next token or diffusion step.
    """
    config = effective_config(model, request.config)
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(6), "little")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    text_cfg = config.text
    greedy = text_cfg.temperature == 0.0
    warpers = LogitsProcessorList()
    if not greedy:
        warpers.append(TemperatureLogitsWarper(text_cfg.temperature))
        if text_cfg.top_p < 1.0:
            warpers.append(TopPLogitsWarper(text_cfg.top_p))
    builder = model.prompts
    banned = _banned_tokens(model).to(model.device)
    start_ids = torch.tensor(sorted(builder.start_ids.values()), device=model.device)

    state = prefill(model, request)
    limit = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0) or None
    parts: list[Text | Image | Audio] = []
    run: list[int] = []  # token ids of the text part being written
    written = ""  # their decoded text
    emitted = ""  # how much of it was streamed (a decode can still change its tail, e.g. around punctuation)
    forced = builder.start_ids.get(config.output_modality) if config.output_modality != "auto" else None

    def close_text() -> Iterator[TextDelta]:
        nonlocal run, written, emitted
        if written.startswith(emitted) and len(written) > len(emitted):
            yield TextDelta(text=written[len(emitted) :])
        if written.strip():
            parts.append(Text(written))
        run, written, emitted = [], "", ""

    for step in range(text_cfg.max_new_tokens or DEFAULT_MAX_NEW_TOKENS):
        if limit is not None and state.length + 3 > limit:
            break
        if forced is not None:
            token, forced = forced, None
        else:
            logits = state.logits.clone()
            logits[banned] = float("-inf")
            if step == 0 and config.output_modality == "text":
                logits[start_ids] = float("-inf")
            token = _pick(logits, warpers, greedy, generator)
        if token == builder.end_id:
            break
        modality = builder.modality_of_start.get(token)
        if modality is None:
            run.append(token)
            written = model.tokenizer.decode(run, skip_special_tokens=True)
            if written.startswith(emitted) and len(written) > len(emitted):
                yield TextDelta(text=written[len(emitted) :])
                emitted = written
            state.feed_token(token)
            continue

        yield from close_text()
        state.feed_token(token)
        unit = model.predict_feature(modality, state.hidden)
        feature = model.restore_scale(modality, unit)
        embed_dtype = model.llm.get_input_embeddings().weight.dtype
        state.feed(model.feature_to_input(modality, feature)[None, None].to(embed_dtype))
        state.feed_token(builder.close_ids[modality])
        index = len(parts)
        part: Any = None
        for item in _decode_medium(model, modality, feature, index, config, seed):
            if isinstance(item, Progress):
                yield item
            else:
                part = item
        parts.append(part)
        yield MediaDone(part_index=index, part=part)
    yield from close_text()
    yield Done(message=Message(role="assistant", parts=parts))
