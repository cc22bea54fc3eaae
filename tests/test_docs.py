"""Every Python block of README.md and docs/*.md runs as written, in a fresh folder, in its own process.

A block that needs what a test machine cannot have (published weights, a Ray instance) is preceded by
``<!-- not run: why -->`` and names the test that runs the same code; a block that talks to a server is
preceded by ``<!-- run beside: COMMAND -->`` and runs while that command serves.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- (not run|run beside): (.*?) -->\n)?```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str | None, str | None, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            found.append((f"{path.relative_to(ROOT)}:{i + 1}", match.group(1), match.group(2), match.group(3)))
    return found


BLOCKS = blocks()


def test_the_docs_have_python_blocks() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("name", "mark", "note", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_block_runs_as_written(name: str, mark: str | None, note: str | None, code: str, tmp_path: Path) -> None:
    if mark == "not run":
        assert note and "test" in note, f"{name}: say why, and which test runs the same code"
        pytest.skip(f"{name}: {note}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = None
    if mark == "run beside":
        assert note is not None
        server = subprocess.Popen(
            shlex.split(note), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        port = int(re.search(r"--port (\d+)", note).group(1))  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            time.sleep(0.5)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-3000:]}"
