"""The import graph of ``telephonyd/``: no cycle (an edge module never imports one that imports it
back, directly or through others, lazily or not), and only the CLI package imports click (the
edges' commands live in ``telephonyd/cli/``, the edges never import the CLI)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "telephonyd"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every telephonyd module ``name`` imports explicitly (at top level or inside a function)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_imports() -> None:
    edges = graph()
    assert "telephonyd.config" in edges["telephonyd.reload"]
    assert "telephonyd.cli.helpers" in edges["telephonyd.cli.outbox"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    assert find_cycle(graph()) is None


def test_only_the_cli_imports_click() -> None:
    known = modules()
    users = set()
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
                users.add(name)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click" and not node.level:
                users.add(name)
    assert users and all(u == "telephonyd.cli" or u.startswith("telephonyd.cli.") for u in users), sorted(users)
    edges = graph()
    assert not [m for m, deps in edges.items() if not m.startswith("telephonyd.cli") and m != "telephonyd.__main__"
                and any(d == "telephonyd.cli" or d.startswith("telephonyd.cli.") for d in deps)]
