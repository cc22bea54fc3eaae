"""The fast decode path (one-token steps compiled over a static cache) answers as the eager path does."""

from __future__ import annotations

import pytest
import torch

from codi2_sdk import Conversation
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model.generation import TokenPicker
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


def _answer_and_steps(backend, words, config, replay=None):  # type: ignore[no-untyped-def]
    """The answer and each step's logits and token; with ``replay``, those tokens are written, not the model's."""
    logits_seen: list[torch.Tensor] = []
    tokens: list[int] = []
    pick = TokenPicker.pick

    def recording(self, logits, step):  # type: ignore[no-untyped-def]
        logits_seen.append(logits.clone())
        tokens.append(pick(self, logits, step) if replay is None else replay[len(tokens)])
        return tokens[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TokenPicker, "pick", recording)
        answer = Conversation(backend=backend, config=config).send(words)
    return answer, logits_seen, tokens


def test_in_bfloat16_the_compiled_steps_stay_within_rounding_of_the_eager_steps() -> None:
    """What a GPU serves: bf16 weights through the compiled steps. Greedy tokens may part where two logits are
    closer than bf16 can tell (the random twin has such near-ties), so the compiled run is fed the eager run's
    tokens and every step's logits, and the media, are compared within bf16's rounding."""
    eager = LocalBackend(full_scale_twin().to(torch.bfloat16), cache_mb=0)
    compiled = LocalBackend(full_scale_twin().to(torch.bfloat16), compile=True)
    for words, modality in [("draw a red circle .", "image"), ("play a sound .", "audio"), ("what is this ?", "text")]:
        config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 16}}
        wanted, expected, tokens = _answer_and_steps(eager, words, config)
        answer, seen, _ = _answer_and_steps(compiled, words, config, replay=tokens)
        assert len(seen) == len(expected) > 2, words
        for index, (want, got) in enumerate(zip(expected, seen, strict=True)):
            scale = float(want.abs().max())
            # bf16 keeps 8 bits: a unit in the last place at this scale is scale / 128 to scale / 256; measured here
            # up to 0.03 x scale, and 0.12 x scale with the compiled steps' inputs at half their size
            assert float((want - got).abs().max()) < 0.08 * scale, (words, index)
        # the media differ as the features' rounding does (the twin's sound: 18.6 dB measured; another prompt's: 5 dB)
        assert answer_differences(answer, wanted, min_psnr_db=25, min_snr_db=12) == [], words
