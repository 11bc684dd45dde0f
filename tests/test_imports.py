"""Imports point one way (docs/architecture.md): checked on the source, every import (lazy ones too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "livesight"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (type-only imports never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = _runtime_nodes(tree) if runtime_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("livesight")}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def importers_of(prefix: str) -> set[str]:
    return {m for m, p in MODULES.items() if any(i == prefix or i.startswith(prefix + ".") for i in imports(p))}


def test_nothing_imports_the_daemon_but_the_wiring() -> None:
    allowed = ("livesight.daemon", "livesight.cli", "livesight.__main__", "livesight.bench")
    assert {m for m in importers_of("livesight.daemon") if not m.startswith(allowed)} == set()


def test_memory_knows_the_model_contract_only() -> None:
    for m, p in MODULES.items():
        if m.startswith("livesight.memory"):
            model = {i for i in imports(p) if i.startswith("livesight.model")}
            assert model <= {"livesight.model.backend"} | {f"livesight.model.backend.{n}" for n in dir_backend()}, m


def dir_backend() -> set[str]:
    tree = ast.parse(MODULES["livesight.model.backend"].read_text())
    return {n.name for n in tree.body if isinstance(n, ast.ClassDef)} | {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }


def test_lower_layers_do_not_import_upper_ones() -> None:
    rules = {
        "livesight.streaming": ("livesight.model", "livesight.memory", "livesight.protocols", "livesight.bench"),
        "livesight.model": ("livesight.streaming", "livesight.memory", "livesight.protocols", "livesight.bench"),
        "livesight.memory": ("livesight.streaming", "livesight.protocols", "livesight.bench"),
        "livesight.protocols": ("livesight.model", "livesight.memory", "livesight.bench", "livesight.tools"),
    }
    bad = []
    for m, p in MODULES.items():
        for layer, forbidden in rules.items():
            if m.startswith(layer):
                bad += [(m, i) for i in imports(p) if i.startswith(forbidden)]
    # the protocol faces may use the one backoff (streaming/backoff.py) and nothing else of streaming
    bad += [
        (m, i)
        for m, p in MODULES.items()
        if m.startswith("livesight.protocols")
        for i in imports(p)
        if i.startswith("livesight.streaming") and not i.startswith("livesight.streaming.backoff")
    ]
    assert bad == []


def test_no_import_cycle() -> None:
    """No module reaches itself through the imports that run (lazy ones included)."""
    graph = {m: {i for i in imports(p, runtime_only=True) if i in MODULES} for m, p in MODULES.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for m in graph if (c := cycle_from(m)) is not None]
    assert cycles == []
