"""tools/slim_checkout.py: a checkout slimmed for a size-limited GPU transfer, blocked from commits, restored intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "slim_checkout.py"


def _run(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=60, check=check)


def _slimmer(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(repo, sys.executable, str(SCRIPT), *args, check=False)


def _checkout(tmp_path: Path) -> Path:
    """A repository laid out as this one: 3 MiB of weights in nested folders, a little code, .whl ignored."""
    repo = tmp_path / "checkout"
    weights = repo / "codi2_sdk" / "weights" / "codi2-mini" / "decoders" / "image"
    weights.mkdir(parents=True)
    (weights / "diffusion_pytorch_model.safetensors").write_bytes(b"\1" * 3 * 2**20)
    (weights / "config.json").write_text("{}")
    (repo / "codi2_sdk" / "__init__.py").write_text('"""the package"""\n')
    (repo / ".gitignore").write_text("/.whl/\n")  # as this repository's: wheels travel only when carried
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return repo


def test_slim_untracks_the_weights_blocks_commits_and_restore_gives_the_checkout_back(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    (repo / ".whl" / "1").mkdir(parents=True)
    (repo / ".whl" / "1" / "av.whl").write_bytes(b"\0" * 2**20)

    before = _slimmer(repo, "size", "--limit-mib", "2")
    assert before.returncode == 1 and "tree: 3.0 MiB (over 2 MiB)" in before.stdout

    slimmed = _slimmer(repo, "slim", "--limit-mib", "2", "--carry", ".whl/1")
    assert slimmed.returncode == 0, slimmed.stderr
    assert "tree: 0.0 MiB (fits" in slimmed.stdout and "tree + .whl/1: 1.0 MiB (fits 2 MiB)" in slimmed.stdout
    weights = repo / "codi2_sdk/weights/codi2-mini/decoders/image/diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size == 3 * 2**20  # on disk still
    assert "safetensors" not in _run(repo, "git", "ls-files").stdout
    assert "??" not in _run(repo, "git", "status", "--porcelain").stdout  # ignored: they do not travel as untracked

    commit = _run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x", check=False)
    assert commit.returncode != 0 and "slim_checkout.py restore" in commit.stderr
    assert _slimmer(repo, "slim").returncode != 0  # not twice

    restored = _slimmer(repo, "restore")
    assert restored.returncode == 0, restored.stderr
    assert "diffusion_pytorch_model.safetensors" in _run(repo, "git", "ls-files").stdout
    assert _run(repo, "git", "status", "--porcelain").stdout == ""
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert "safetensors" not in (repo / ".git" / "info" / "exclude").read_text()


def test_slim_refuses_uncommitted_work_so_restore_cannot_lose_it(tmp_path: Path) -> None:
    repo = _checkout(tmp_path)
    (repo / "codi2_sdk" / "__init__.py").write_text('"""edited"""\n')

    refused = _slimmer(repo, "slim")

    assert refused.returncode != 0 and "nothing uncommitted" in refused.stderr
    assert "diffusion_pytorch_model.safetensors" in _run(repo, "git", "ls-files").stdout
    assert (repo / "codi2_sdk" / "__init__.py").read_text() == '"""edited"""\n'


def test_this_checkout_slimmed_fits_the_transfer_with_room_for_a_part_of_wheels() -> None:
    """What travels once the weights are untracked: everything tracked but codi2-mini's weights."""
    repo = SCRIPT.parents[1]
    listed = _run(repo, "git", "ls-files", "-z").stdout.split("\0")
    kept = [repo / n for n in listed if n and not (n.startswith("codi2_sdk/weights/") and n.endswith(".safetensors"))]
    assert sum(p.stat().st_size for p in kept if p.is_file()) < 20 * 2**20  # leaves over 40 MiB of 64 for a part
