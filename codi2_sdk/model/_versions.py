"""The library releases the model's code relies on, checked when :mod:`codi2_sdk.model` is imported.

transformers before 5.24 takes the KV cache as ``past_key_values`` and silently ignores the ``cache`` keyword this
package passes: every decoding step would then attend to itself alone and answer nonsense without an error. The
installer enforces the same floors (pyproject.toml); this catches environments assembled around it (a ``--target``
folder on ``PYTHONPATH``, a system image with its own releases).
"""

from __future__ import annotations

import transformers
from packaging.version import Version

from ..errors import MissingDependencyError

__all__ = ["MIN_TRANSFORMERS", "check_transformers"]

MIN_TRANSFORMERS = "5.24"


def check_transformers(found: str = transformers.__version__) -> None:
    """Raise :class:`~codi2_sdk.errors.MissingDependencyError` where ``found`` is older than :data:`MIN_TRANSFORMERS`."""
    if Version(found) < Version(MIN_TRANSFORMERS):
        raise MissingDependencyError(
            f"codi2-sdk's model needs transformers>={MIN_TRANSFORMERS}, found {found} (older releases ignore the KV "
            f"cache it passes): pip install -U 'transformers>={MIN_TRANSFORMERS},<6'"
        )


check_transformers()
