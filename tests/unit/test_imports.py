"""No import circles among the project's modules: shared helpers live where both sides import them downward.

Every import counts, also the ones inside functions (a deferred import hides a circle, it does not
remove it). The graph is read from the source with `ast`: importing the modules would need Spark.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from scenelake.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit
PACKAGES = ("scenelake", "jobs")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports}, `from scenelake import x` resolved to scenelake.x."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and m not in PACKAGES}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import path per circle found by a depth-first search (empty when there is none)."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "scenelake.contracts" in graph["scenelake.quality"]  # a top-level import
    assert "scenelake.trino_server" in graph["scenelake.cli"]  # an import inside a function
    assert "scenelake.text" in graph["jobs.compare"]


def test_finds_a_planted_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []
