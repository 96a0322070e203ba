"""The package's layout: no import cycles, lower layers never import higher ones, every module imports alone.

The import graph is read from the source (``ast``), lazy imports inside functions and
``TYPE_CHECKING`` imports included: a cycle hidden in a function is still a cycle in the design.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "shared"

#: Bottom to top. A module may import its own layer and the ones below, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("shared", "shared.tasks", "shared.errors", "shared.settings_table", "shared.config",
                    "shared.tokens", "shared.imaging", "shared.analysis_options")),
    ("parts", ("shared.providers", "shared.offline", "shared.documents", "shared.cache_entity", "shared.cache",
               "shared.storage",
               "shared.schemas", "shared.quota", "shared.budget",
               "shared.telemetry")),
    ("services", ("shared.document_analysis", "shared.analysis", "shared.extraction", "shared.multi", "shared.batch",
                  "shared.blob.jobs",
                  "shared.blob.deferral", "shared.blob.claims",
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


def test_readme_lists_every_module_and_subpackage():
    """README's tree of shared/ is the map newcomers read first: every module and subpackage is on it, and
    nothing that no longer exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("```text\n  shared/\n")
    tree = readme[start:readme.index("```", start + 8)]
    listed = {line.split()[0] for line in tree.splitlines()[2:] if line.startswith("    ") and line[4] != " "}
    present = {entry.name + ("/" if entry.is_dir() else "") for entry in PACKAGE.iterdir()
               if entry.name not in ("__init__.py", "__main__.py", "__pycache__") and entry.suffix in (".py", "")}
    assert listed == present


def test_modules_stay_small():
    """One job each; the ~400-line budget (with a little slack) keeps them readable."""
    long = {name: lines for name, path in MODULES.items()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES * 1.15}
    assert long == {}


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"shared.__main__"}))
def test_each_module_imports_alone(name, fresh_imports):
    assert fresh_imports[name] == "", fresh_imports[name]


#: Run in one fresh interpreter: preload the third-party libraries, then fork once per module and import
#: it first, alone, in the child. Starting an interpreter per module costs a second or more each (the
#: Azure, OpenAI and OCR libraries load every time); forking after they are loaded costs milliseconds, and
#: no module of ours is loaded before the one under test, which is what "alone" is about.
FORK_IMPORTS = """
import importlib, json, os, sys, traceback
names, preload, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
for library in preload:
    try:
        importlib.import_module(library)
    except Exception:
        pass  # the module that needs it fails alone, below, and says why
assert not [m for m in sys.modules if m == "shared" or m.startswith("shared.")], "preloading imported ours"
results, running, waiting = {}, {}, list(names)


def reap():
    pid, status = os.wait()
    name, read = running.pop(pid)
    with os.fdopen(read, "rb") as pipe:  # a short message: it fitted in the pipe before the child exited
        results[name] = pipe.read().decode(errors="replace") or (f"exit status {status}" if status else "")


while waiting:
    if len(running) >= (os.cpu_count() or 2):
        reap()
    name = waiting.pop(0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = ""
        except BaseException:
            message = traceback.format_exc()[-2000:]
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    running[pid] = (name, read)
while running:
    reap()
with open(out, "w", encoding="utf-8") as file:
    json.dump(results, file)
"""


def third_party_libraries() -> list[str]:
    """The modules ours import that are not ours (stdlib included: harmless to preload)."""
    found: set[str] = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return sorted(name for name in found if name.split(".")[0] not in {"shared", "__future__"})


@pytest.fixture(scope="module")
def fresh_imports(tmp_path_factory) -> dict[str, str]:
    """Each module imported first, alone, in a fresh process; stderr of each failure ('' when it worked)."""
    names = sorted(set(MODULES) - {"shared.__main__"})
    out = tmp_path_factory.mktemp("imports") / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", FORK_IMPORTS, json.dumps(names), json.dumps(third_party_libraries()),
                           str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text(encoding="utf-8"))
