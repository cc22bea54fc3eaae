"""The package's shape: imports run downward only, and there is one modality type."""

from __future__ import annotations

import ast
from pathlib import Path

import codi2_sdk

PACKAGE = Path(codi2_sdk.__file__).parent


def _unit(module: str) -> str:
    """The layer a module belongs to: its first component under codi2_sdk (a ``__main__`` is an entry point
    above every layer, like the ``codi2`` command)."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return module
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """Layer -> layers it imports (module level and inside functions alike)."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                    targets = [stem] if node.module else [f"{stem}.{a.name}" for a in node.names]
                elif node.module and node.module.startswith("codi2_sdk"):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("codi2_sdk")]
            for target in targets:
                if _unit(target) != _unit(module):
                    edges.setdefault(_unit(module), set()).add(_unit(target))
    return edges


def test_imports_run_downward_only() -> None:
    edges = _imports()
    edges.pop("__init__", None)  # the top-level API re-exports everything
    assert "backends" not in edges.get("model", set()), "the model must not import from backends/"
    # no cycle between layers: a depth-first search finds no back edge
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == "__init__":
                continue
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_one_modality_type() -> None:
    literal = "Literal[" + '"text", "image", "audio"'
    media = "Literal[" + '"image", "audio"'
    found = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if literal in path.read_text() or media in path.read_text()
    ]
    assert found == ["content.py"], found
