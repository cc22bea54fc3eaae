"""The package surface: a sorted, complete __all__ and a torch-free import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import codi2_sdk


def test_all_is_sorted_and_resolvable() -> None:
    assert codi2_sdk.__all__ == sorted(codi2_sdk.__all__)
    eager = [name for name in codi2_sdk.__all__ if name not in ("LocalBackend", "RemoteBackend")]
    for name in eager:
        assert getattr(codi2_sdk, name) is not None


def test_public_names_have_docstrings() -> None:
    for name in codi2_sdk.__all__:
        if name in ("LocalBackend", "RemoteBackend", "__version__", "Part", "Event", "Modality", "MediaModality"):
            continue
        assert getattr(codi2_sdk, name).__doc__, name


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, codi2_sdk, codi2_sdk.testing\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'peft', 'fastapi') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_loads_no_media_library_http_client_or_torch() -> None:
    import subprocess
    import sys

    probe = "import sys, codi2_sdk; print(sorted({'numpy', 'PIL', 'soundfile', 'av', 'httpx', 'torch', 'asyncio'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"  # each is imported where it is first used (tools/bench/import_time.py times it)


def test_renamed_modules_keep_their_old_import_paths_for_a_release_with_a_warning() -> None:
    import importlib
    import sys

    import pytest

    from codi2_sdk._moved import MOVED

    for old, new in sorted(MOVED.items()):
        for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
            del sys.modules[name]
        with pytest.warns(DeprecationWarning, match=f"{old} was renamed {new}"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new), old
    from codi2_sdk.tools import codi2_toolkit as old_toolkit  # the attribute path a user wrote

    from codi2_sdk.agents import codi2_toolkit

    assert old_toolkit is codi2_toolkit


def test_the_model_refuses_a_transformers_that_would_ignore_its_kv_cache() -> None:
    """Before 5.24 transformers took the cache as ``past_key_values`` and dropped the ``cache`` keyword unseen: every
    step would attend to itself alone. Such a release, put on the path past the installer, is a clear error."""
    import pytest

    from codi2_sdk.errors import MissingDependencyError
    from codi2_sdk.model._libraries import MIN_TRANSFORMERS, check_transformers

    with pytest.raises(MissingDependencyError, match=r"transformers>=5\.24, found 5\.17\.0.*pip install"):
        check_transformers("5.17.0")
    check_transformers(MIN_TRANSFORMERS)
    check_transformers()  # the installed one
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"transformers>={MIN_TRANSFORMERS},' in pyproject  # the installer's floor and the import check agree
