"""Loading a checkpoint quietly: nothing is printed that the user did not cause."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

__all__ = ["quiet_loading"]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' and diffusers' loading bars and the deprecation warning peft triggers in
    transformers 5 (``is_gradient_checkpointing``) while a model loads; each is restored after."""
    bars = [
        (transformers_logging, transformers_logging.is_progress_bar_enabled()),
        (diffusers_logging, diffusers_logging.is_progress_bar_enabled()),
    ]
    for library, _ in bars:
        library.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        for library, enabled in bars:
            if enabled:
                library.enable_progress_bar()
