"""The tree reads as the pipeline: imports run one way, down the layers, and no function grows
past what one person reads at once (docs/contributing.md)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, ...]] = [
    # Foundations: imported by everything, importing nothing of vista but each other.
    ("vista", "errors", "jsonio", "progress", "lock", "safeload", "registry", "cache", "boundary"),
    ("store", "saes", "metrics"),
    ("sources",),  # images -> activations, written into the store
    ("train",),  # SAEs (and small encoders) trained on a store
    ("analysis",),  # a trained SAE measured on a store: Context, Result, the analyses
    ("interventions",),  # edits, steering, erasure, built on the analysis layer's types
    ("reports",),  # results -> JSON summaries, plots, HTML
    ("benchmark",),  # the grid: train, analyse, merge, report
    ("conf",),  # every verb's settings, typed
    ("outputs", "pipeline", "cli", "__main__"),  # the verbs
]
"""Bottom to top. A module may import its own layer's packages and those below, never above."""

MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "vista").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every vista module ``name`` imports, at the top, in a function or under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t not in MODULES and "." in t:
                t = t.rpartition(".")[0]
            if t in MODULES and t != name and t.startswith("vista"):
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vista"


def _layer(package: str) -> int:
    for i, members in enumerate(LAYERS):
        if package in members:
            return i
    raise AssertionError(f"package {package!r} is in no layer of tests/test_structure.py")


def test_every_package_has_a_layer() -> None:
    for module in MODULES:
        _layer(_package(module))


def test_no_import_runs_up_the_layers() -> None:
    upward = [
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in sorted(targets)
        if _layer(_package(b)) > _layer(_package(a))
    ]
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_no_package_cycle() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for a, targets in GRAPH.items():
        packages[_package(a)].update(_package(b) for b in targets if _package(b) != _package(a))
    assert _cycles(packages) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _long_functions() -> list[str]:
    out = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - start + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name} ({lines} lines)")
    return out


def test_no_function_over_sixty_lines() -> None:
    assert _long_functions() == []


@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_layers_name_real_packages(layer: int) -> None:
    known = {_package(m) for m in MODULES}
    assert set(LAYERS[layer]) <= known, set(LAYERS[layer]) - known
