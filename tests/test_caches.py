"""The prefix KV cache and the media feature cache: answers are the same with and without them, and they
are used (a conversation's later turns and shared examples prefill only what is new)."""

from __future__ import annotations

import numpy as np
import pytest

from codi2_sdk import Conversation, Image, Message
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.world import Picture, render_picture
from codi2_sdk.model import CoDi2Model
from codi2_sdk.model.runtime.prefix_cache import PrefixCache


def hashes(message: Message) -> list[str]:
    return [p.text if p.type == "text" else p.sha256 for p in message.parts]  # type: ignore[union-attr]


def picture(item: Picture, seed: int = 0) -> Image:
    return Image.from_pil(render_picture(item, np.random.default_rng(seed)))


@pytest.fixture(scope="module")
def mini_model() -> CoDi2Model:
    return CoDi2Model.from_pretrained("codi2-mini")


def play(backend: LocalBackend) -> list[list[str]]:
    conv = Conversation(backend=backend, config={"seed": 7})
    conv.add_example(
        inputs=picture(Picture("circle", "red", "small", "left")),
        outputs=picture(Picture("circle", "blue", "small", "left")),
    )
    turns = [
        (picture(Picture("square", "green", "large", "left")), "what is this?"),
        ("make it blue.",),
        ("move it to the right.",),
        ("what is this?",),
        ("what does it sound like?",),
    ]
    return [hashes(conv.send(*turn)) for turn in turns]


def test_a_conversation_is_the_same_with_and_without_the_caches(mini_model: CoDi2Model) -> None:
    cached = LocalBackend(mini_model)
    plain = LocalBackend(mini_model, cache_mb=0, media_cache_items=0)
    assert plain.prefix_cache is None and plain.media_cache is None
    assert play(cached) == play(plain)
    assert cached.prefix_cache is not None and cached.media_cache is not None
    assert cached.prefix_cache.hits >= 4  # every turn after the first
    assert cached.prefix_cache.reused_tokens >= 4 * mini_model.config.prefill_block
    assert cached.media_cache.hits > 0  # the example pair and earlier answers were not encoded again


def test_examples_are_a_prefix_shared_across_conversations(mini_model: CoDi2Model) -> None:
    backend = LocalBackend(mini_model)
    examples = [
        (Picture("circle", "red", "small", "left"), Picture("circle", "red", "large", "left")),
        (Picture("square", "blue", "small", "right"), Picture("square", "blue", "large", "right")),
    ]
    answers = []
    for query in (Picture("triangle", "green", "small", "center"), Picture("diamond", "cyan", "small", "left")):
        conv = Conversation(backend=backend, config={"seed": 1})
        for before, after in examples:
            conv.add_example(inputs=picture(before), outputs=picture(after))
        answers.append(hashes(conv.send(picture(query))))
    assert backend.prefix_cache is not None and backend.prefix_cache.hits == 1  # the second conversation
    alone = LocalBackend(mini_model, cache_mb=0)
    conv = Conversation(backend=alone, config={"seed": 1})
    for before, after in examples:
        conv.add_example(inputs=picture(before), outputs=picture(after))
    assert hashes(conv.send(picture(Picture("diamond", "cyan", "small", "left")))) == answers[1]


def test_the_prefix_cache_is_bounded_by_memory(mini_model: CoDi2Model) -> None:
    backend = LocalBackend(mini_model, cache_mb=0.5)  # a few prompts' worth of keys and values
    for i in range(12):
        Conversation(backend=backend, config={"seed": 0, "text": {"max_new_tokens": 2}}).send(
            picture(Picture("circle", "red", "small", "left"), seed=i), "what is this?"
        )
    cache = backend.prefix_cache
    assert cache is not None and 0 < len(cache) < 12 and cache.nbytes <= cache.max_bytes


def test_chat_template_prompts_extend_each_other_too() -> None:
    from codi2_sdk.testing.twins import full_scale_twin

    twin = full_scale_twin(seed=0)
    config = {"seed": 2, "output_modality": "text", "text": {"max_new_tokens": 6, "temperature": 1.0}}

    def chat(backend: LocalBackend) -> list[list[str]]:
        conv = Conversation(backend=backend, config=config, system="be brief .")
        return [hashes(conv.send(text)) for text in ("show a red circle .", "what is this ?", "play a sound .")]

    cached = LocalBackend(twin)
    assert chat(cached) == chat(LocalBackend(twin, cache_mb=0))
    assert cached.prefix_cache is not None and cached.prefix_cache.hits >= 1


def test_lookup_leaves_the_last_token_and_cuts_at_block_boundaries() -> None:
    cache = PrefixCache(max_mb=1)
    assert cache.lookup((1, 2, 3), 2) == (0, None)


def test_clear_caches_after_changing_the_weights_in_place() -> None:
    """The caches hold what the weights computed: after a change (a fine-tune in place), cleared caches give the
    new model's answer, as a fresh backend does."""
    import torch

    model = CoDi2Model.from_pretrained("codi2-mini")
    backend = LocalBackend(model)

    def ask(on: LocalBackend) -> list[str]:
        conv = Conversation(backend=on, config={"seed": 1})
        for before, after in (("red", "blue"), ("green", "blue")):  # examples: a long prefix, kept in the cache
            conv.add_example(
                inputs=picture(Picture("circle", before, "small", "left")),
                outputs=picture(Picture("circle", after, "small", "left")),
            )
        return hashes(conv.send(picture(Picture("square", "yellow", "large", "right"))))

    ask(backend)  # fills both caches
    with torch.no_grad():
        model.in_proj["image"][0].weight.mul_(-1.0)  # pictures now read as something else
    fresh = ask(LocalBackend(model))
    assert ask(backend) != fresh  # the old weights' KV cache answered
    backend.clear_caches()
    assert len(backend.prefix_cache) == 0  # type: ignore[arg-type]
    assert ask(backend) == fresh
