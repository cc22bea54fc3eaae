"""The third-party libraries under the model: their releases checked, their chatter kept out of the user's way.

**Releases.** transformers before 5.24 takes the KV cache as ``past_key_values`` and silently ignores the ``cache``
keyword this package passes: every decoding step would then attend to itself alone and answer nonsense without an
error. The installer enforces the same floors (pyproject.toml); :func:`check_transformers`, run on import, catches
environments assembled around it (a ``--target`` folder on ``PYTHONPATH``, a system image with its own releases).

**Quiet loading.** transformers and diffusers report what they do while a model loads or saves (progress bars,
"Writing model shards", the mean-resizing notice, components a pipeline cannot save, a deprecated pipeline class);
none of it is the user's doing. Inside :func:`quiet_loading` those libraries log errors only and show no bars. To
see everything, turn on INFO logging for the SDK (``logging.getLogger("codi2_sdk").setLevel(logging.INFO)``, or
``logging.basicConfig(level=logging.INFO)``): then nothing is hidden.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from packaging.version import Version

from ..errors import MissingDependencyError

__all__ = ["MIN_TRANSFORMERS", "check_transformers", "quiet_loading", "verbose"]

MIN_TRANSFORMERS = "5.24"

log = logging.getLogger("codi2_sdk")

# Imported first by codi2_sdk.model, before transformers and diffusers: where torchao is installed (the lowmem
# extra), importing them imports it, and it logs a warning per CUDA kernel build a CPU machine cannot load, torch
# one per enum it registers, and diffusers one for torchao classes it looks for under older names. A level the user
# set on those loggers is kept.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.ERROR)


def verbose() -> bool:
    """Whether the user asked to see the libraries' own messages (INFO logging on the SDK's logger)."""
    return log.isEnabledFor(logging.INFO)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' and diffusers' bars and log lines below ERROR, and the deprecation warning peft
    triggers in transformers 5 (``is_gradient_checkpointing``), while a model loads, is assembled or is saved;
    each setting is restored after. Nested uses are fine. Nothing is hidden when :func:`verbose`."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    if verbose():
        yield
        return
    libraries = (transformers_logging, diffusers_logging)
    saved = [(library, library.is_progress_bar_enabled(), library.get_verbosity()) for library in libraries]
    for library in libraries:
        library.disable_progress_bar()
        library.set_verbosity(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        for library, bars, verbosity in saved:
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()


def check_transformers(found: str | None = None) -> None:
    """Raise :class:`~codi2_sdk.errors.MissingDependencyError` where transformers (``found``, by default the
    installed release) is older than :data:`MIN_TRANSFORMERS`."""
    if found is None:
        import transformers

        found = transformers.__version__
    if Version(found) < Version(MIN_TRANSFORMERS):
        raise MissingDependencyError(
            f"codi2-sdk's model needs transformers>={MIN_TRANSFORMERS}, found {found} (older releases ignore the KV "
            f"cache it passes): pip install -U 'transformers>={MIN_TRANSFORMERS},<6'"
        )


check_transformers()
