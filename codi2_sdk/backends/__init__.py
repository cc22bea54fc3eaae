"""Backends: the ways to run a CoDi-2 model behind one interface.

:class:`~codi2_sdk.backends.base.Backend` is the interface; ``LocalBackend`` (torch, in-process) and
``RemoteBackend`` (HTTP) implement it and are imported lazily, so that a remote-only install needs no
torch.
"""

from __future__ import annotations

import threading

from ..errors import ModelError
from .base import Backend

__all__ = ["ALLOW_MODEL_LOADING", "Backend", "default_backend"]

ALLOW_MODEL_LOADING = True
"""Whether :func:`default_backend` may load the in-process model; tests turn it off with
:func:`codi2_sdk.testing.block_model_loading`."""

_default: Backend | None = None
_default_lock = threading.Lock()


def default_backend() -> Backend:
    """The embedded codi2-mini model in-process, loaded once per process and shared."""
    global _default
    if not ALLOW_MODEL_LOADING:
        raise ModelError(
            "the default model is blocked here (codi2_sdk.testing.block_model_loading): "
            "give the Conversation a backend, e.g. codi2_sdk.testing.FunctionBackend"
        )
    with _default_lock:
        if _default is None:
            try:
                from .local import LocalBackend
            except ImportError as exc:
                raise ModelError(
                    "the default model (codi2-mini) runs in-process and needs torch: "
                    "pip install 'codi2-sdk[local]', or give the Conversation a RemoteBackend"
                ) from exc
            _default = LocalBackend.from_pretrained("codi2-mini")
        return _default
