"""The house rules a newcomer relies on: small modules, no import circles, every module in the
architecture page, and SQL dialects told apart only under `memoric/db/`."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import memoric

PACKAGE = pathlib.Path(memoric.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
MAX_MODULE_LINES = 410  # "about 400": one concern per module
MIGRATIONS = PACKAGE / "migrations"  # frozen DDL of each migration, read by name, not imported


def modules() -> dict[str, pathlib.Path]:
    """Every module of the package by dotted name, the shipped migration files left out."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if MIGRATIONS in path.parents:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def runtime_imports(path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """The package's modules `path` imports when it runs (imports only for type checkers aside)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for statement in ast.walk(tree)
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test)
        for node in ast.walk(statement)
    }
    imported = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in imported if name in known}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, as the modules along it, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for following in sorted(graph[node]):
            if state.get(following) == "open":
                return [*path[path.index(following) :], following]
            if following not in state and (found := visit(following, [*path, following])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def import_graph() -> dict[str, set[str]]:
    """Which of the package's modules each one imports; a package's own `__init__` not counted
    as a step of its modules (importing `memoric.db.store` runs `memoric.db` first, by Python's
    rules, not by the module's choice)."""
    known = modules()
    return {
        name: {other for other in runtime_imports(path, known) if not name.startswith(f"{other}.")} - {name}
        for name, path in known.items()
    }


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_about_400_lines(name):
    lines = modules()[name].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it by concern"


def test_no_module_imports_itself_back_through_others():
    assert cycle(import_graph()) is None


def test_an_import_circle_is_noticed():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(name for name in modules() if name.count(".") >= 1))
def test_the_architecture_page_names_every_module(name):
    file_name = modules()[name].name
    assert f"`{file_name}`" in ARCHITECTURE.read_text(), f"docs/architecture.md does not name {file_name}"


def test_only_the_database_layer_tells_the_dialects_apart():
    branch = re.compile(r"""(dialect(\.name)?|\.name)\s*[!=]=\s*["'](sqlite|postgresql)["']""")
    outside = [
        f"{name}:{number}"
        for name, path in modules().items()
        if not name.startswith("memoric.db.")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if branch.search(line)
    ]
    assert outside == []
