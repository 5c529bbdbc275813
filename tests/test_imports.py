"""hiper's modules import each other without circles.

The graph is read from the source with `ast`, without importing anything: an edge A -> B for
every import of B anywhere in A, at module level or inside a function (a lazy import is still
a dependency: it only moves the failure, or the half-initialised module, to the first call).
`import hiper.x.y`, `from hiper.x import y` (y a submodule or a name in hiper.x) and relative
imports all count; an import of a package's name points to the package's __init__, not to the
packages above it (Python runs those too, but every submodule depends on its parents that way).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hiper

PACKAGE = Path(hiper.__file__).parent
ROOT = PACKAGE.name


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name: its .py files, and compiled modules known by
    their stubs (hiper._C from _C.pyi), which import nothing of hiper's."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    for stub in package.rglob("*.pyi"):
        modules.setdefault(module_name(stub, package), stub)
    return modules


def imported(tree: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> dict[str, int]:
    """The hiper modules that module `name` imports: {module: line of its first import}."""

    def known(dotted: str) -> str | None:  # the longest prefix of `dotted` that is a module
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def ours(dotted: str | None) -> bool:
        return dotted is not None and (dotted == ROOT or dotted.startswith(ROOT + "."))

    found: dict[str, int] = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [known(alias.name) for alias in node.names if ours(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package holding this module, `level - 1` packages up
                base = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            if ours(source):
                # `from hiper.x import y`: the submodule hiper.x.y if there is one, else hiper.x itself.
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else known(source)
                           for alias in node.names]
        for target in targets:
            if target is not None and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    graph = {}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            graph[name] = {}
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = imported(tree, name, path.name == "__init__.py", modules)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None. Depth-first, iteratively."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return path[path.index(step):] + [step]
            elif step not in state:
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph.get(step, {}))))
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    steps = [f"  {a} -> {b}  ({modules[a].relative_to(PACKAGE.parent)}:{graph[a][b]})"
             for a, b in zip(cycle, cycle[1:])]
    return "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(steps)


def import_path(graph: dict[str, dict[str, int]], start: str, wanted) -> list[str] | None:
    """The first import chain [start, ..., m] (breadth first) to a module m with wanted(m), or None."""
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    for name in queue:
        if wanted(name):
            chain = [name]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            return chain[::-1]
        for step in sorted(graph.get(name, {})):
            if step not in parent:
                parent[step] = name
                queue.append(step)
    return None


# ---------------------------------------------------------------------------- the tests
def test_hiper_has_no_import_cycles():
    modules = find_modules()
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph, modules)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The reader on a made-up package: absolute, from-package, submodule, relative and lazy imports."""
    package = tmp_path / ROOT
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from hiper.a import A\n",
        "a.py": "import os\nfrom hiper import b\nA = 1\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import d\nfrom ..sub.e import E\n",
        "sub/e.py": "import hiper.a.missing\nE = 1\n",
        "d.py": "def g():\n    import hiper.sub\n",
        "_C.pyi": "def f() -> None: ...\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    modules = find_modules(package)
    graph = {name: set(edges) for name, edges in import_graph(modules).items()}
    assert graph == {
        "hiper": {"hiper.a"}, "hiper.a": {"hiper.b"}, "hiper.b": {"hiper.sub.c"}, "hiper.sub": set(),
        "hiper.sub.c": {"hiper.d", "hiper.sub.e"}, "hiper.sub.e": {"hiper.a"}, "hiper.d": {"hiper.sub"},
        "hiper._C": set()}
    assert find_cycle({k: dict.fromkeys(v, 1) for k, v in graph.items()}) == [
        "hiper.a", "hiper.b", "hiper.sub.c", "hiper.sub.e", "hiper.a"]


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, None),
    ({"a": {"b": 1, "c": 1}, "b": {"c": 1}, "c": {}}, None),  # a diamond is no cycle
    ({"a": {"b": 1}, "b": {"a": 1}}, ["a", "b", "a"]),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {"b": 1}}, ["b", "c", "b"]),
])
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


# The trainer's HAE is hiper.hae_pipeline; the verl adapters (hiper.integrations) read verl batches
# and call it from above, so nothing on the trainer's side may lead to them.
TRAINER_SIDE = ("hiper.trainer", "hiper.estimators")


@pytest.mark.parametrize("start", TRAINER_SIDE)
def test_the_trainer_side_never_imports_the_verl_adapters(start):
    """No import of theirs, at module level or inside a function, leads to hiper.integrations."""
    graph = import_graph(find_modules())
    chain = import_path(graph, start, lambda name: name.startswith(f"{ROOT}.integrations"))
    assert chain is None, "import chain to the verl adapters: " + " -> ".join(chain)


def test_importing_the_trainer_loads_no_verl_adapter():
    """The same, as Python sees it: a fresh interpreter that imports the trainer's modules."""
    code = ("import sys, hiper.trainer, hiper.estimators; "
            "print(sorted(m for m in sys.modules if m.startswith('hiper.integrations')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_import_path():
    graph = {"a": {"b": 1, "c": 1}, "b": {"d": 1}, "c": {"d": 1}, "d": {}}
    assert import_path(graph, "a", lambda m: m == "d") == ["a", "b", "d"]
    assert import_path(graph, "c", lambda m: m == "b") is None
