"""Argument types for the command lines (``codi2 ...``, ``python -m codi2_sdk.server``, the examples)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["PORT", "whole_number"]


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An ``argparse`` type: a whole number of at least ``low`` (and at most ``high``), else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: it must be {span}")
        return value

    return parse


PORT = whole_number(0, 65535)
"""A TCP port (0: any free one)."""
