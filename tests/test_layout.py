"""The package's layout: no import cycles, lower layers never import higher ones, every module imports alone.

The import graph is read from the source (``ast``), lazy imports inside functions and
``TYPE_CHECKING`` imports included: a cycle hidden in a function is still a cycle in the design.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "shared"

#: Bottom to top. A module may import its own layer and the ones below, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("shared", "shared.tasks", "shared.errors", "shared.config", "shared.tokens", "shared.imaging")),
    ("parts", ("shared.providers", "shared.offline", "shared.cache", "shared.storage", "shared.schemas",
               "shared.schema_safety", "shared.quota")),
    ("services", ("shared.analysis", "shared.extraction", "shared.multi", "shared.batch", "shared.blob.jobs",
                  "shared.blob.pipeline", "shared.blob.watch", "shared.services")),
    ("edges", ("shared.http", "shared.cli", "shared.blob.trigger", "shared.__main__")),
)
EDGES = ("shared.http", "shared.cli", "shared.blob.trigger")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """The ``shared`` modules a file imports, anywhere in it; ``from shared.x import y`` counts y if it is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search, colouring nodes)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "active"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "active":
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{name} is in no layer of tests/test_layout.py: place it"
    return best[0]


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None


def test_lower_layers_never_import_higher_ones():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for name, targets in GRAPH.items() for target in targets if layer_of(target) > layer_of(name)]
    assert upward == []


def test_function_app_imports_only_the_edges():
    imported = imported_modules(REPO / "function_app.py")
    assert imported and all(name.startswith(EDGES) for name in imported), imported


def test_modules_stay_small():
    """One job each; the ~400-line budget (with a little slack) keeps them readable."""
    long = {name: lines for name, path in MODULES.items()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES * 1.15}
    assert long == {}


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"shared.__main__"}))
def test_each_module_imports_alone(name, fresh_imports):
    assert fresh_imports[name] == "", fresh_imports[name]


@pytest.fixture(scope="module")
def fresh_imports() -> dict[str, str]:
    """Each module imported first, alone, in a fresh interpreter; stderr of each failure ('' when it worked)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(name: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        return name, "" if done.returncode == 0 else done.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, sorted(set(MODULES) - {"shared.__main__"})))
