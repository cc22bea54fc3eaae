"""The package surface: a sorted, complete __all__ and a torch-free import."""

from __future__ import annotations

import subprocess
import sys

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
