"""The import graph of the installed packages: no cycles, and the design's one-way layers.

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import is still
a dependency, and a cycle through one is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, from pyproject's package-dir mapping."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in config["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Every module's dotted name -> its file."""
    found: dict[str, Path] = {}
    for package, folder in _package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # a sub-package with its own package-dir entry (vplink.agent inside vplink/) is found there
            found.setdefault(name, path)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the vplink modules it imports (anywhere in its body)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


LAYERS = ("core", "retrieval", "prompts", "agent", "distill", "eval", "model_server", "service")
FRONT = "front door"  # vplink's own modules: the CLI, the lazy public names, the wiring

#: package -> the packages it must never import (the design's one-way imports).
FORBIDDEN: dict[str, set[str]] = {
    "core": set(LAYERS) - {"core"} | {FRONT},                       # the lowest layer imports none of them
    "retrieval": {"agent", "distill", "eval", "prompts", "model_server", "service", FRONT},
    "prompts": set(LAYERS) - {"prompts", "core"} | {FRONT},          # templates and their loader: nothing that runs
    "agent": {"distill", "eval", "model_server", "service", FRONT},  # the scorer and the server are handed in
    "distill": {"model_server", "service", FRONT},
    "eval": {"model_server", "service", FRONT},
    "model_server": set(LAYERS) - {"model_server", "core"} | {FRONT},  # tooling: starts vLLM, builds models
    "service": {"distill", "eval", "model_server", FRONT},  # the HTTP app is handed an opened linker
}


def layer(module: str) -> str:
    """The package a module belongs to (``vplink.agent.nodes`` -> ``agent``), or the front door."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else FRONT


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that crosses a layer the wrong way, as 'importer -> imported'."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer(b) in FORBIDDEN.get(layer(a), set()))


def test_imports_flow_one_way() -> None:
    assert violations(import_graph()) == []


def test_every_package_has_a_contract() -> None:
    assert set(FORBIDDEN) == set(LAYERS) and set(_package_dirs()) >= {f"vplink.{name}" for name in LAYERS} - {
        "vplink.core"}  # core lives inside vplink/, the others have their own folder


def test_a_wrong_way_import_is_caught() -> None:
    graph = {"vplink.retrieval.search": {"vplink.agent.state"}, "vplink.agent.nodes": {"vplink.retrieval.search"},
             "vplink.core.records": {"vplink.cli"}, "vplink.service.app": {"vplink.wiring", "vplink.agent.linker"}}
    assert violations(graph) == ["vplink.core.records -> vplink.cli", "vplink.retrieval.search -> vplink.agent.state",
                                 "vplink.service.app -> vplink.wiring"]


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # state.py imports display only inside LinkResult._repr_html_
    assert "vplink.agent.display" in graph["vplink.agent.state"]
    assert "vplink.retrieval.store" in graph["vplink.retrieval.search"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_class_is_defined_once() -> None:
    """One place for each record: no two modules define a class of the same name (RankedEntity was twice)."""
    where: dict[str, list[str]] = {}
    for name, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(name)
    assert {cls: mods for cls, mods in where.items() if len(mods) > 1} == {}
