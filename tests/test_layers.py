"""The import graph of the project's packages, read from the source (docs/architecture.md).

Every `import` counts, at module level, inside a function (lazy) or under TYPE_CHECKING:
a cycle through any of them is still a cycle. The rules:
- no cycle between files of edge_agent/, drivers/, control_loops/, simulators/;
- drivers/ and control_loops/ never import each other or simulators/, and of edge_agent/
  only the shared vocabulary;
- the vocabulary imports nothing of the project but the vocabulary;
- the runtime (edge_agent/) never imports simulators/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.harness import REPO

PACKAGES = ("edge_agent", "drivers", "control_loops", "simulators")
VOCABULARY = {
    "edge_agent",  # the package itself: its version and default paths
    "edge_agent.logs",
    "edge_agent.i18n",  # the texts people read, in their language
    "edge_agent.points",
    "edge_agent.cache",
    "edge_agent.envelope",
    "edge_agent.events",
    "edge_agent.recent",
    "edge_agent.config",
    "edge_agent.config.base",
    "edge_agent.commands",
    "edge_agent.commands.messages",
    "edge_agent.commands.holds",
    "edge_agent.commands.context",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `from a.b import c`: c may be a name
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_is_read():
    # It would pass on nothing: check that it sees the imports it is about.
    assert "edge_agent.commands.context" in GRAPH["control_loops.runner"]
    assert "edge_agent.config.base" in GRAPH["drivers.base"]
    assert len(MODULES) > 100


def test_no_file_imports_itself_through_others():
    assert _cycles() == []


def test_drivers_and_loops_know_only_the_vocabulary():
    wrong = {
        module: sorted(
            target
            for target in targets
            if (_top(target) == "edge_agent" and target not in VOCABULARY)
            or _top(target) in {"drivers", "control_loops", "simulators"} - {_top(module)}
        )
        for module, targets in GRAPH.items()
        if _top(module) in ("drivers", "control_loops")
    }
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_vocabulary_stands_on_its_own():
    wrong = {m: sorted(GRAPH[m] - VOCABULARY) for m in VOCABULARY if GRAPH[m] - VOCABULARY}
    assert wrong == {}


def test_the_runtime_never_imports_the_simulators():
    wrong = {
        module: sorted(t for t in targets if _top(t) == "simulators")
        for module, targets in GRAPH.items()
        if _top(module) == "edge_agent"
    }
    assert {m: t for m, t in wrong.items() if t} == {}
