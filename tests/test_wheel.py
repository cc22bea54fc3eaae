"""The package as a user installs it: an sdist and a wheel built from the repository (the wheel from the sdist),
checked by twine, installed into a fresh virtual environment (not editable, with its declared dependencies) and run:
``codi2 demo`` and a Conversation turn on the shipped weights."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 100 * 2**20  # PyPI's default upload limit


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


def test_the_wheel_builds_installs_and_runs_the_demo(tmp_path: Path, capsys) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT))
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    _run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))
    with capsys.disabled():
        print(
            f"\nwheel {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB; sdist {sdist.stat().st_size / 2**20:.1f} MiB"
        )
    assert wheel.stat().st_size < LIMIT
    names = zipfile.ZipFile(wheel).namelist()
    assert "codi2_sdk/weights/codi2-mini/codi2.json" in names and "codi2_sdk/py.typed" in names
    assert not any(n.startswith(("tests/", "tools/", "docs/")) for n in names)
    # installed as a user would: a fresh virtual environment, torch first (pinned: a CPU build), then the wheel
    # with the extra that runs the model in-process; run from elsewhere
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", "torch==2.13.0")
    _run(python, "-m", "pip", "install", "-q", f"{wheel}[local]")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("PYTHONPATH", None)
    where = _run(python, "-c", "import codi2_sdk; print(codi2_sdk.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # the wheel's copy, not the checkout's
    _run(str(venv / "bin" / "codi2"), "demo", "--out", str(tmp_path / "demo"), cwd=tmp_path, env=env)
    assert (tmp_path / "demo" / "index.html").exists() and list((tmp_path / "demo").glob("*.png"))
    turn = (
        "from codi2_sdk import Conversation; "
        "answer = Conversation(config={'seed': 0, 'output_modality': 'image'}).send('draw a large red circle on the left.'); "
        "print(answer.images[0].width)"
    )
    assert _run(python, "-c", turn, cwd=tmp_path, env=env).stdout.strip() == "64"
