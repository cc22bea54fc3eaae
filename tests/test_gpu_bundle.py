"""tools/gpu_bundle.py: the wheels for an offline GPU machine, packed into parts that each fit a transfer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_bundle.py"


def test_wheels_are_packed_into_parts_under_the_limit_with_their_install_commands(tmp_path: Path) -> None:
    wheels = tmp_path / "downloaded"
    wheels.mkdir()
    sizes = {"av": 700, "transformers": 400, "diffusers": 300, "pydantic": 200, "greenlet": 100, "soxr": 50}
    for name, kib in sizes.items():
        (wheels / f"{name}-1.0-py3-none-any.whl").write_bytes(b"\0" * kib * 1024)
    out = tmp_path / ".whl"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-dir", str(wheels), "--out", str(out), "--part-mb", "1"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == ["1", "2"]  # 1,750 KiB in parts of at most 1,024
    assert sorted(w.name.split("-")[0] for p in parts for w in p.iterdir()) == sorted(sizes)
    assert all(sum(w.stat().st_size for w in p.iterdir()) <= 2**20 for p in parts)
    assert done.stdout.count("pip install -q --no-index --no-deps") == 2 and f"{out}/2/*.whl" in done.stdout

    too_small = subprocess.run(
        [sys.executable, str(SCRIPT), "--from-dir", str(wheels), "--out", str(out), "--part-mb", "0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert too_small.returncode != 0 and "av-1.0-py3-none-any.whl alone is 0.7 MiB" in too_small.stderr


def test_every_package_it_bundles_is_installed_here_so_its_version_can_be_pinned() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from gpu_bundle import pinned
    finally:
        sys.path.remove(str(SCRIPT.parent))
    pins = pinned()
    assert any(p.startswith("transformers==5.") for p in pins) and any(p.startswith("av==") for p in pins)
