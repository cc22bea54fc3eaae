"""The fast decode path (one-token steps compiled over a static cache) answers as the eager path does."""

from __future__ import annotations

import pytest

from codi2_sdk import Conversation
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.testing import answer_differences
from codi2_sdk.testing.twins import full_scale_twin

TURNS = [("draw a red circle .", "auto"), ("what is this ?", "text"), ("play a sound .", "audio")]


@pytest.fixture(scope="module")
def backends() -> tuple[LocalBackend, LocalBackend]:
    return LocalBackend(full_scale_twin(), cache_mb=0), LocalBackend(full_scale_twin(), compile=True)


def test_compiled_static_decoding_gives_the_eager_greedy_answers(backends) -> None:
    eager, compiled = backends
    assert compiled.compiled is not None and compiled.prefix_cache is not None
    for words, modality in TURNS:
        config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 24}}
        a = Conversation(backend=eager, config=config).send(words)
        b = Conversation(backend=compiled, config=config).send(words)
        assert answer_differences(a, b, min_snr_db=30) == [], words


def test_a_conversation_goes_on_over_the_reset_static_cache_from_the_cached_prefix(backends) -> None:
    compiled = backends[1]
    config = {"seed": 1, "output_modality": "text", "text": {"max_new_tokens": 12}}
    talks = [Conversation(backend=backend, config=config, system="be brief .") for backend in backends]
    hits, reused = compiled.prefix_cache.hits, compiled.prefix_cache.reused_tokens
    for words in ("what is this ?", "show a red circle moving .", "what is this ?"):
        answers = [talk.send(words).text for talk in talks]
        assert answers[0] == answers[1], words
    assert compiled.prefix_cache.hits > hits and compiled.prefix_cache.reused_tokens > reused
