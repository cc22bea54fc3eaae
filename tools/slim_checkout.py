#!/usr/bin/env python
"""Slim this checkout for a size-limited transfer to a GPU machine, and restore it after.

A lent GPU machine receives a copy of the working tree (tracked files and untracked files git does not ignore,
plus carried paths) up to a size limit (64 MiB). codi2-mini's committed weights alone are over it, and
``tools/gpu_check.py --sdk`` does not use them. ``slim`` untracks them (the files stay on disk), ignores them
locally and blocks commits until ``restore``, which gives the index, the ignore list and the hooks back as they
were::

    python tools/slim_checkout.py slim --carry .whl/1 --carry .whl/2   # prints what travels with each carried path
    ...  # the device calls
    python tools/slim_checkout.py restore

``size`` prints what would travel without changing anything. ``slim`` refuses a checkout with uncommitted changes,
so ``restore`` cannot lose work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

WEIGHTS = "codi2_sdk/weights/*.safetensors"
EXCLUDE_LINE = "/codi2_sdk/weights/**/*.safetensors"
HOOK_MARK = "# slim_checkout: commits blocked while slimmed"
HOOK = f"""#!/bin/sh
{HOOK_MARK}
echo "this checkout is slimmed for a GPU transfer (codi2-mini's weights untracked):" >&2
echo "run python tools/slim_checkout.py restore before committing" >&2
exit 1
"""
MIB = 2**20


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` and return its output; a failure exits with git's message."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def git_path(root: Path, name: str) -> Path:
    """Where git keeps ``name`` (``info/exclude``, ``hooks/pre-commit``) for the checkout at ``root``."""
    return root / git(root, "rev-parse", "--git-path", name).strip()


def travelling_bytes(root: Path, carry: list[str]) -> int:
    """Bytes of what a transfer takes: tracked files, untracked files git does not ignore, the carried paths."""
    listed = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    paths = {root / name for name in listed if name}
    for extra in carry:
        base = root / extra
        paths |= {base} if base.is_file() else {p for p in base.rglob("*") if p.is_file()}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def report(root: Path, carry: list[str], limit_mib: float) -> bool:
    """Print the travelling size alone and with each carried path; whether every one fits ``limit_mib``."""
    fits = True
    for label, paths in [("tree", [])] + [(f"tree + {c}", [c]) for c in carry]:
        mib = travelling_bytes(root, paths) / MIB
        fits &= mib <= limit_mib
        print(f"{label}: {mib:.1f} MiB ({'fits' if mib <= limit_mib else 'over'} {limit_mib:g} MiB)")
    return fits


def slim(root: Path, carry: list[str], limit_mib: float) -> None:
    """Untrack the weights, ignore them locally and block commits; exit non-zero where something is still over."""
    if git(root, "status", "--porcelain"):
        sys.exit("slim needs a checkout with nothing uncommitted (restore resets the index): commit or stash first")
    hook = git_path(root, "hooks/pre-commit")
    if hook.exists():
        sys.exit(f"{hook} exists: already slimmed, or a pre-commit hook of yours that this would replace")
    git(root, "rm", "-r", "-q", "--cached", WEIGHTS)
    exclude = git_path(root, "info/exclude")
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as f:
        f.write(f"{EXCLUDE_LINE}\n")
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK)
    hook.chmod(0o755)
    print("slimmed: codi2-mini's weights untracked, commits blocked until `restore`")
    if not report(root, carry, limit_mib):
        sys.exit("still over the limit: carry less per call")


def restore(root: Path) -> None:
    """Track the weights again, drop the ignore line and the hook; check the checkout is as it was."""
    git(root, "reset", "-q")
    exclude = git_path(root, "info/exclude")
    if exclude.exists():
        kept = [line for line in exclude.read_text().splitlines() if line != EXCLUDE_LINE]
        exclude.write_text("".join(f"{line}\n" for line in kept))
    hook = git_path(root, "hooks/pre-commit")
    if hook.exists() and HOOK_MARK in hook.read_text():
        hook.unlink()
    left = git(root, "status", "--porcelain")
    if left:
        sys.exit(f"restored, but the checkout differs from its last commit:\n{left}")
    print("restored: the weights are tracked again and commits allowed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["slim", "restore", "size"])
    parser.add_argument("--carry", action="append", default=[], help="a path a device call carries (repeatable)")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="the transfer's limit (default: 64)")
    args = parser.parse_args()
    root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    if args.action == "slim":
        slim(root, args.carry, args.limit_mib)
    elif args.action == "restore":
        restore(root)
    elif not report(root, args.carry, args.limit_mib):
        sys.exit(1)


if __name__ == "__main__":
    main()
