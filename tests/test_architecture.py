"""The layering rules of docs/architecture.md, read off the source with `ast`: imports point down, never in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "bookchat"
ENTRY_POINTS = {"bookchat.main", "bookchat.cli", "bookchat.__main__"}
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def imported_modules(path: Path, known: Iterable[str]) -> set[str]:
    """Every bookchat module `path` imports, wherever the statement stands (lazy and TYPE_CHECKING imports too)."""
    known = set(known)
    found: set[str] = set()
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from bookchat.x import y` imports the module bookchat.x.y when there is one, else bookchat.x.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("bookchat") and name != this:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported_modules(path, found) for name, path in found.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    """The first-level part of bookchat a module belongs to: `bookchat.chat.service` -> `chat`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_walker_sees_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    # Known edges of each kind: a plain from-import, a lazy import inside a function, a TYPE_CHECKING import.
    assert "bookchat.config" in graph["bookchat.runtime.resources"]
    assert "bookchat.llm.provider" in graph["bookchat.runtime.resources"]
    assert "bookchat.runtime.rate_limiter" in graph["bookchat.runtime.resources"]


def test_no_module_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_no_two_packages_import_each_other() -> None:
    packages: dict[str, set[str]] = {}
    for source, targets in import_graph().items():
        for target in targets:
            if package_of(source) != package_of(target):
                packages.setdefault(package_of(source), set()).add(package_of(target))
    assert cycles(packages) == []


def test_nothing_imports_the_entry_points() -> None:
    importers = {
        source: sorted(targets & ENTRY_POINTS)
        for source, targets in import_graph().items()
        if targets & ENTRY_POINTS and source not in ENTRY_POINTS
    }
    assert importers == {}


def test_retrieval_knows_nothing_of_documents_chat_or_http() -> None:
    forbidden = {"documents", "chat", "conversations", "auth", "edge", "web", "search", "openai_compat", "runtime"}
    leaks = {
        source: sorted(target for target in targets if package_of(target) in forbidden)
        for source, targets in import_graph().items()
        if package_of(source) == "retrieval"
    }
    assert {source: targets for source, targets in leaks.items() if targets} == {}


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_start_with_a_docstring_and_stay_small(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{name} has no module docstring saying what its job is"
    lines = text.count("\n")
    # A longer module says why at its top, in a docstring line starting "Long because".
    assert lines <= MAX_MODULE_LINES or "Long because" in docstring, f"{name}: {lines} lines"
