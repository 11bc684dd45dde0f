"""Which node runs which camera: explicit `camera.node`, otherwise rendezvous (highest-random-weight) hashing.

Rendezvous hashing: every (node, camera) pair gets a pseudo-random score from a stable hash; a camera belongs to the
node with the highest score. Every node computes the same answer from the same config with no coordination; adding
a node moves to it only the cameras it now wins (about 1/N of them), and removing one moves only its own cameras.
Pure functions, no I/O: the same inputs give the same owner on every machine and Python version (sha256, not hash()).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from livesight.config import MAX_CAMERAS_PER_NODE, Config, GatewayConfig
from livesight.errors import ConfigError


def score(node: str, camera: str) -> int:
    """The (node, camera) weight: the first 8 bytes of sha256("node\\0camera") as an integer."""
    digest = hashlib.sha256(f"{node}\0{camera}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def hashed_owner(camera: str, nodes: Sequence[str]) -> str:
    """The node with the highest score for this camera (ties, astronomically rare, go to the smaller node id)."""
    if not nodes:
        raise ValueError("no nodes to choose from")
    return max(nodes, key=lambda n: (score(n, camera), _neg(n)))


def _neg(s: str) -> tuple[int, ...]:
    return tuple(-b for b in s.encode())


def assignment(cfg: Config | GatewayConfig) -> dict[str, str]:
    """camera id → owning node id for a fleet config (a config without `fleet`: every camera → cfg.node.id)."""
    if cfg.fleet is None:
        assert isinstance(cfg, Config)
        return {cam.id: cfg.node.id for cam in cfg.cameras}
    nodes = cfg.fleet.node_ids
    return {cam.id: cam.node or hashed_owner(cam.id, nodes) for cam in cfg.cameras}


def cameras_of(assign: dict[str, str], node: str) -> list[str]:
    return [cam for cam, owner in assign.items() if owner == node]


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Cameras whose owner differs between two assignments (cameras present in both)."""
    return {cam for cam in before.keys() & after.keys() if before[cam] != after[cam]}


def for_node(cfg: Config, node: str | None = None) -> Config:
    """The config one node runs: `node.id` set (to `node` when given) and only the cameras it owns.

    Without a `fleet` section the config is returned as it is (a single daemon runs every camera).
    Raises ConfigError (naming the field) when the node is not part of the fleet or owns too many cameras."""
    if node is not None:
        cfg = cfg.model_copy(update={"node": cfg.node.model_copy(update={"id": _checked_id(node)})})
    if cfg.fleet is None:
        return cfg
    if cfg.node.id not in cfg.fleet.node_ids:
        raise ConfigError(
            f"node.id: {cfg.node.id!r} is not one of fleet.nodes ({', '.join(cfg.fleet.node_ids)}); "
            "set it with --node or node.id"
        )
    mine = set(cameras_of(assignment(cfg), cfg.node.id))
    cameras = [c for c in cfg.cameras if c.id in mine]
    if len(cameras) > MAX_CAMERAS_PER_NODE:
        raise ConfigError(f"node {cfg.node.id!r} owns {len(cameras)} cameras: at most {MAX_CAMERAS_PER_NODE}")
    return cfg.model_copy(update={"cameras": cameras})


def _checked_id(node: str) -> str:
    from livesight.config import NodeConfig

    try:
        return NodeConfig(id=node).id
    except ValueError:
        raise ConfigError(f"--node: {node!r} is not a valid node id (letters, digits, _ . -; at most 64)") from None


def balance(assign: dict[str, str], nodes: Iterable[str]) -> dict[str, int]:
    """Cameras per node (nodes owning none included)."""
    out = dict.fromkeys(nodes, 0)
    for owner in assign.values():
        out[owner] = out.get(owner, 0) + 1
    return out
