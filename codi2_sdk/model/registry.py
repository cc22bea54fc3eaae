"""The kinds of encoders and decoders a checkpoint may name, each registered by its class.

A checkpoint's ``codi2.json`` names each medium's encoder and decoder by kind (``"cnn_image"``,
``"unclip_image"``, ...). A new kind is one class with a ``kind`` name, ``build(**args)`` (a random-initialised
one) and ``from_pretrained(folder)``, registered with :func:`register_encoder` or :func:`register_decoder`;
its own options (unCLIP's ``noise_level``) are declared on the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from ..errors import ModelError

__all__ = ["DECODER_KINDS", "ENCODER_KINDS", "build_kind", "load_kind", "register_decoder", "register_encoder"]

ENCODER_KINDS: dict[str, Any] = {}
"""Encoder kind -> class."""
DECODER_KINDS: dict[str, Any] = {}
"""Decoder kind -> class."""

T = TypeVar("T")


def register_encoder(cls: T) -> T:
    """Class decorator: make an encoder class available under its ``kind``."""
    ENCODER_KINDS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def register_decoder(cls: T) -> T:
    """Class decorator: make a decoder class available under its ``kind``."""
    DECODER_KINDS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def _kind(registry: dict[str, Any], role: str, kind: str) -> Any:
    if kind not in registry:
        raise ModelError(f"unknown {role} kind {kind!r}; known kinds: {', '.join(sorted(registry))}")
    return registry[kind]


def build_kind(role: str, kind: str, args: dict[str, Any]) -> Any:
    """A random-initialised ``role`` (``"encoder"`` or ``"decoder"``) of ``kind`` from its arguments."""
    return _kind(_REGISTRIES[role], role, kind).build(**args)


def load_kind(role: str, kind: str, directory: Path) -> Any:
    """Load a ``role`` of ``kind`` from its folder."""
    return _kind(_REGISTRIES[role], role, kind).from_pretrained(directory)


_REGISTRIES = {"encoder": ENCODER_KINDS, "decoder": DECODER_KINDS}
