"""Tiny random CoDi-2 models built in code with the real classes (no weights are downloaded)."""

from __future__ import annotations

from codi2_sdk.model import CoDi2Config, CoDi2Model

WORDS = [
    "a",
    "the",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "draw",
    "make",
    "it",
    "sound",
    "of",
    "and",
    "here",
    "is",
    "picture",
    "beep",
]


def tiny_model(seed: int = 0) -> CoDi2Model:
    """A 2-layer Llama with small CNN encoders and latent diffusion decoders (about 0.7M parameters)."""
    return CoDi2Model.from_config(CoDi2Config.tiny(), words=WORDS, seed=seed).eval()
