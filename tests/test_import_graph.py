"""The package's rooms import each other without a circle.

A room is a subpackage of `resp_audio_hf` (`data`, `benchmark`, `hub`, `training`, ...) or a top-level module
(`tagging`, `windowed`, ...); the package's own `__init__` is the room `resp_audio_hf`. Every `import` and
`from ... import` statement counts, at module level or inside a function (a deferred import is still a dependency:
it only hides the circle until the function runs). The graph is read from the source with `ast`, nothing is
imported. What is asserted:

* no module under `data/` imports anything under `benchmark/` (the task registry is below the benchmark);
* the graph between rooms has no cycle at all (imports inside one room are not checked).
"""

from __future__ import annotations

import ast
from pathlib import Path

import resp_audio_hf

PACKAGE_DIR = Path(resp_audio_hf.__file__).parent


def module_names(package_dir: Path) -> dict[str, Path]:
    """`{dotted module name: file}` of every `.py` file under `package_dir` (a package is named by its `__init__`)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_edges(package_dir: Path) -> set[tuple[str, str]]:
    """Every `(importing module, imported module)` pair inside the package. `from pkg import name` is an edge to
    `pkg.name` when that is a module, else to `pkg`."""
    top = package_dir.name
    modules = module_names(package_dir)
    edges = set()
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
                ]
            else:
                continue
            edges.update((module, target) for target in targets if target == top or target.startswith(top + "."))
    return edges


def room_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def room_graph(edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        if room_of(source) != room_of(target):
            graph.setdefault(room_of(source), set()).add(room_of(target))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as `[a, b, ..., a]`, or `None` (depth-first search, nodes visited in sorted order)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all its successors are explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_finder_sees_a_circle_through_a_deferred_import_and_none_without_it(tmp_path):
    package = tmp_path / "pkg"
    for folder in ("a", "b"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a" / "x.py").write_text("from ..b.y import f\n")
    (package / "b" / "y.py").write_text("def f():\n    from ..a import x\n")
    (package / "b" / "z.py").write_text("import pkg.b.y\n")
    edges = import_edges(package)
    assert ("pkg.a.x", "pkg.b.y") in edges and ("pkg.b.y", "pkg.a.x") in edges and ("pkg.b.z", "pkg.b.y") in edges
    assert find_cycle(room_graph(edges)) == ["pkg.a", "pkg.b", "pkg.a"]

    (package / "b" / "y.py").write_text("def f():\n    return 1\n")
    assert find_cycle(room_graph(import_edges(package))) is None


def test_the_task_registry_imports_nothing_from_the_benchmark():
    edges = import_edges(PACKAGE_DIR)
    crossing = sorted(
        (source, target)
        for source, target in edges
        if room_of(source) == "resp_audio_hf.data" and room_of(target) == "resp_audio_hf.benchmark"
    )
    assert crossing == []


def test_no_circle_between_the_rooms_of_the_package():
    graph = room_graph(import_edges(PACKAGE_DIR))
    assert {"resp_audio_hf.data", "resp_audio_hf.benchmark"} <= set(graph)  # the graph was read
    assert "resp_audio_hf.data" in graph["resp_audio_hf.benchmark"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
