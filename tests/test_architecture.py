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


MODEL = PACKAGE / "model"


def _model_imports(path: Path) -> set[str]:
    """The ``codi2_sdk.model`` subpackages and modules a file under model/ imports (absolute names)."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(relative.parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            stem = ".".join(base + ([node.module] if node.module else []))
            found |= {stem} if node.module else {f"{stem}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("codi2_sdk.model"):
            found.add(node.module or "")
    return {name for name in found if name.startswith("codi2_sdk.model")}


def test_the_model_package_is_split_by_scale_with_imports_running_down() -> None:
    """The core (model/'s own modules) imports neither family; runtime/ imports nothing of the model; the
    families do not import each other; model/ keeps at most 8 files at its top and each subpackage is small."""
    top = sorted(p.name for p in MODEL.glob("*.py"))
    assert len(top) <= 8, top
    for sub in ("mini", "imagebind", "fullscale", "runtime"):
        lines = sum(len(p.read_text().splitlines()) for p in (MODEL / sub).rglob("*.py"))
        assert lines < 1500, (sub, lines)
    rules = {
        "core": ("codi2_sdk.model.mini", "codi2_sdk.model.fullscale"),
        "runtime": ("codi2_sdk.model",),
        "mini": ("codi2_sdk.model.fullscale", "codi2_sdk.model.imagebind"),
        "imagebind": ("codi2_sdk.model.mini", "codi2_sdk.model.fullscale"),
        "fullscale": ("codi2_sdk.model.mini",),
    }
    for path in MODEL.rglob("*.py"):
        if path == MODEL / "__init__.py":
            continue  # the public names, and the registration of both families
        inside = path.relative_to(MODEL).parts
        layer = inside[0] if len(inside) > 1 else "core"
        own = f"codi2_sdk.model.{layer}"
        for name in _model_imports(path):
            if name == own or name.startswith(own + "."):
                continue
            assert not name.startswith(rules[layer]), f"{path.relative_to(PACKAGE)} imports {name}"


def test_the_server_entry_point_does_not_import_the_cli() -> None:
    source = (PACKAGE / "server" / "__main__.py").read_text()
    assert "cli" not in {getattr(node, "module", None) for node in ast.walk(ast.parse(source))}


LONGEST_FUNCTION = 60


def test_no_function_in_the_package_is_over_60_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not long, "\n".join(long)
