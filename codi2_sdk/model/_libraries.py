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

**Where weights already are.** Whoever fetched Llama-2 or a diffusers pipeline with ``hf download`` (or any
``from_pretrained`` on a connected machine) holds it in the Hugging Face cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) as ``models--owner--name/snapshots/<commit>/``, its files links into ``blobs/``.
:func:`local_path` reads such a model by its repo id (``"meta-llama/Llama-2-7b-chat-hf"``, or
``"owner/name@revision"``) or by its cache folder; it only looks in the cache (``local_files_only``), and never
downloads.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

from packaging.version import Version

from ..errors import MissingDependencyError, ModelNotFoundError

__all__ = ["MIN_TRANSFORMERS", "check_transformers", "local_path", "quiet_loading", "verbose"]

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


_CACHE_PREFIX = "models--"


def local_path(name_or_path: str | Path, what: str) -> Path:
    """The file or folder ``name_or_path`` names: a path as it is, a cache folder ``models--owner--name`` as its
    snapshot, else a repo id's snapshot in the local Hugging Face cache.

    Raises:
        ModelNotFoundError: none of these is there; the message names ``what`` and where it looked.
    """
    path = Path(name_or_path).expanduser()
    if path.name.startswith(_CACHE_PREFIX) and (path / "snapshots").is_dir():
        repo_id = "/".join(path.name[len(_CACHE_PREFIX) :].split("--"))
        return _snapshot(repo_id, cache_dir=path.parent) or path
    if path.exists():
        return path
    if isinstance(name_or_path, str) and _is_repo_id(name_or_path):
        snapshot = _snapshot(name_or_path)
        if snapshot is not None:
            return snapshot
        from huggingface_hub import constants

        raise ModelNotFoundError(
            f"no {what} at {name_or_path}, nor a model {name_or_path!r} in the Hugging Face cache at "
            f"{constants.HF_HUB_CACHE} (the SDK never downloads: fetch it with `hf download {name_or_path}`, "
            "or give its folder)"
        )
    raise ModelNotFoundError(f"no {what} at {path}")


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = name.partition("@")[0]
    if repo_id.count("/") != 1 or name.startswith((".", "~", "/")):
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def _snapshot(name: str, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot of ``name`` (``owner/name[@revision]``), or ``None`` when the cache has none."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, _, revision = name.partition("@")
    try:
        folder = snapshot_download(repo_id, revision=revision or None, cache_dir=cache_dir, local_files_only=True)
    except LocalEntryNotFoundError:
        return None
    return Path(str(folder))


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
