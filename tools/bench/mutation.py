#!/usr/bin/env python
"""Mutation check: break the code on purpose, one change at a time, and see whether a test notices.

Run by hand (not in CI; it runs the chosen tests once per mutant):

    python tools/bench/mutation.py                 # the named bugs, then generated mutants
    python tools/bench/mutation.py --named-only    # just the named bugs (issues 14 and 33 list them)
    python tools/bench/mutation.py --max 30 --seed 1

Targets: conversation.py, backends/remote.py, tools/, server/app.py. Generated mutants flip comparisons,
``and``/``or``, boolean constants and ``+``/``-``, and drop ``raise`` statements, each in one place, with
the tests that cover that file. A mutant "survives" when its tests still pass: each survivor is a place
where the tests do not pin the behaviour. The working tree must be clean; every file is restored after each
mutant (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import ast
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = {
    "codi2_sdk/errors.py": ["tests/test_error_contract.py", "tests/test_server_hardening.py"],
    "codi2_sdk/conversation.py": ["tests/test_conversation.py", "tests/test_properties.py"],
    "codi2_sdk/backends/remote.py": [
        "tests/test_error_contract.py",
        "tests/test_server.py",
        "tests/test_server_hardening.py",
    ],
    "codi2_sdk/server/app.py": [
        "tests/test_server.py",
        "tests/test_server_hardening.py",
        "tests/test_error_contract.py",
    ],
    "codi2_sdk/server/_common.py": ["tests/test_server_hardening.py", "tests/test_server.py"],
    "codi2_sdk/agents/langchain_tools.py": ["tests/test_tools.py", "tests/test_tools_requests.py"],
    "codi2_sdk/agents/chat_model.py": ["tests/test_tools.py", "tests/test_tools_requests.py"],
    "codi2_sdk/agents/store.py": ["tests/test_tools.py", "tests/test_properties.py"],
}


@dataclass
class Mutant:
    name: str
    path: str
    old: str
    new: str

    @property
    def tests(self) -> list[str]:
        return TESTS[self.path]


NAMED = [
    Mutant(
        "save is a plain, non-atomic write",
        "codi2_sdk/conversation.py",
        "        _remove_stale_temp_files(path)\n",
        "        path.write_bytes(payload)\n        return path\n",
    ),
    Mutant(
        "save writes the target in place once the temporary file is synced",
        "codi2_sdk/conversation.py",
        "            os.replace(tmp, path)\n",
        "            path.write_bytes(payload)\n            tmp.unlink()\n",
    ),
    Mutant(
        "in-context edit tool swaps before and after",
        "codi2_sdk/agents/langchain_tools.py",
        "Example(inputs=[self._get(p.before)], outputs=[self._get(p.after)])",
        "Example(inputs=[self._get(p.after)], outputs=[self._get(p.before)])",
    ),
    Mutant(
        "ChatCoDi2 drops the system message and the input images",
        "codi2_sdk/agents/chat_model.py",
        "        out.append(Message(role=role, parts=from_langchain_blocks(message.content)))  # type: ignore[arg-type]",
        "        if role != 'system':\n            out.append(Message(role=role, parts=[p for p in from_langchain_blocks(message.content) if p.type == 'text']))  # type: ignore[arg-type]",
    ),
    Mutant(
        "body size not counted while reading",
        "codi2_sdk/server/_common.py",
        "        if size + len(chunk) > limit:",
        "        if False:",
    ),
    Mutant(
        "the client retries every 4xx",
        "codi2_sdk/errors.py",
        "        return row.retryable if row is not None else exc.status_code in RETRYABLE_STATUSES",
        "        return True",
    ),
]

_FLIPS = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def generated(path: str) -> list[Mutant]:
    """One mutant per comparison, boolean operator, boolean constant, +/- and raise in ``path``."""
    source = (ROOT / path).read_text()
    lines = source.splitlines(keepends=True)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not hasattr(node, "lineno") or node.lineno != getattr(node, "end_lineno", None):
            continue  # one-line nodes only: the change is a text replacement on that line
        line = lines[node.lineno - 1]
        segment = ast.get_source_segment(source, node)
        if segment is None or line.count(segment) != 1:
            continue
        replacement = None
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIPS:
            flipped = ast.Compare(node.left, [_FLIPS[type(node.ops[0])]()], node.comparators)
            replacement = ast.unparse(flipped)
        elif isinstance(node, ast.BoolOp):
            replacement = ast.unparse(ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            replacement = str(not node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            replacement = ast.unparse(ast.BinOp(node.left, op, node.right))
        elif isinstance(node, ast.Raise):
            replacement = "pass"
        if replacement is not None and replacement != segment:
            name = f"{path}:{node.lineno} {segment.strip()[:60]!r} -> {replacement[:60]!r}"
            found.append(Mutant(name, path, line, line.replace(segment, replacement)))
    return found


def run(mutant: Mutant, timeout: float) -> str:
    target = ROOT / mutant.path
    original = target.read_text()
    if original.count(mutant.old) != 1:
        return "not applicable"
    try:
        target.write_text(original.replace(mutant.old, mutant.new))
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed (timeout)"
        if done.returncode == 0:
            return "survived"
        failed = [
            line.split(" - ")[0].removeprefix("FAILED ")
            for line in done.stdout.splitlines()
            if line.startswith(("FAILED tests/", "ERROR tests/"))
        ]
        return f"killed by {failed[0] if failed else 'an error (see pytest)'}"
    finally:
        target.write_text(original)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--named-only", action="store_true", help="only the named bugs")
    parser.add_argument("--max", type=int, default=40, help="generated mutants to try (a seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    args = parser.parse_args()
    if subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip():
        print("the working tree has changes: commit or stash them first", file=sys.stderr)
        return 2
    mutants = list(NAMED)
    if not args.named_only:
        pool = [m for path in TESTS if path != "codi2_sdk/errors.py" for m in generated(path)]
        random.Random(args.seed).shuffle(pool)
        mutants += pool[: args.max]
    survivors, verdicts = [], []
    began = time.monotonic()
    for i, mutant in enumerate(mutants, 1):
        verdict = run(mutant, args.timeout)
        verdicts.append(verdict)
        print(f"[{i}/{len(mutants)} {time.monotonic() - began:6.0f}s] {mutant.name}\n    {verdict}", flush=True)
        if verdict == "survived":
            survivors.append(mutant.name)
    killed = sum(v.startswith("killed") for v in verdicts)
    tried = sum(v != "not applicable" for v in verdicts)
    print(f"\n{killed} of {tried} mutants killed; {len(survivors)} survived:")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
