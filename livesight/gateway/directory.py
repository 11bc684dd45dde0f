"""The fleet directory as the gateway sees it: camera → owning node (+ URL, state), node → online.

Fed from the retained MQTT topics (livesight/fleet/topics.py) by mqtt_watch.py; no I/O here. The fleet config gives
the cameras to expect and their owners by the same rule the nodes use (so a camera whose node never came up is
still listed, as unavailable); a retained `camera.info` overrides that with what the node itself announced.

Waiting for changes: `await directory.wait_changed(version)` returns once the version moved past `version`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from livesight.fleet import topics
from livesight.fleet.topics import CameraInfo

MAX_NODES = 1024
MAX_CAMERAS = 4096


@dataclass(frozen=True, slots=True)
class NodeState:
    online: bool
    since: float


@dataclass(frozen=True, slots=True)
class CameraEntry:
    camera: str
    node: str | None
    url: str | None
    state: str
    reason: str
    available: bool  # the owning node is online


class Directory:
    def __init__(self, expected: dict[str, str], *, nodes: list[str] | None = None) -> None:
        self._expected = dict(expected)  # camera → owner by the fleet config
        self._order = list(expected)
        self.nodes: dict[str, NodeState] = {n: NodeState(False, time.time()) for n in (nodes or [])}
        self.infos: dict[str, CameraInfo] = {}
        self.mqtt_connected = False
        self.synced = False  # set once the retained topics of the first connection had time to arrive
        self.version = 0
        self.ignored = 0  # malformed or over-limit directory messages
        self._changed = asyncio.Event()

    # ---- updates (mqtt_watch.py) ---------------------------------------------------------------------------

    def apply(self, prefix: str, topic: str, payload: bytes) -> bool:
        """Apply one MQTT message; True when the directory changed."""
        parsed = topics.parse_topic(prefix, topic)
        if parsed is None:
            return False
        kind, key = parsed
        if kind == "node":
            return self.set_node(key, payload.strip() == topics.ONLINE)
        if not payload:  # a cleared retained info: the camera is gone from the directory
            return self._changed_if(self.infos.pop(key, None) is not None)
        info = topics.decode_camera_info(payload)
        if info is None or info.camera != key:
            self.ignored += 1
            return False
        if key not in self.infos and len(self.infos) >= MAX_CAMERAS:
            self.ignored += 1
            return False
        if self.infos.get(key) == info:
            return False
        self.infos[key] = info
        if info.node not in self.nodes and len(self.nodes) < MAX_NODES:
            self.nodes[info.node] = NodeState(False, time.time())  # its availability message may follow
        return self._changed_if(True)

    def set_node(self, node: str, online: bool) -> bool:
        prev = self.nodes.get(node)
        if prev is not None and prev.online == online:
            return False
        if prev is None and len(self.nodes) >= MAX_NODES:
            self.ignored += 1
            return False
        self.nodes[node] = NodeState(online, time.time())
        return self._changed_if(True)

    def set_mqtt(self, connected: bool, *, synced: bool | None = None) -> None:
        changed = self.mqtt_connected != connected
        self.mqtt_connected = connected
        if synced is not None and synced != self.synced:
            self.synced = synced
            changed = True
        self._changed_if(changed)

    def _changed_if(self, changed: bool) -> bool:
        if changed:
            self.version += 1
            self._changed.set()
            self._changed = asyncio.Event()
        return changed

    async def wait_changed(self, version: int) -> int:
        while self.version == version:
            await self._changed.wait()
        return self.version

    # ---- queries -------------------------------------------------------------------------------------------

    def cameras(self) -> list[str]:
        """Every camera: the config's in config order, then cameras only the directory knows (sorted)."""
        extra = sorted(c for c in self.infos if c not in self._expected)
        return self._order + extra

    def owner(self, camera: str) -> str | None:
        info = self.infos.get(camera)
        return info.node if info is not None else self._expected.get(camera)

    def online(self, node: str | None) -> bool:
        st = self.nodes.get(node) if node is not None else None
        return st is not None and st.online

    def url(self, node: str) -> str | None:
        """The node's WebSocket URL, from the newest info any of its cameras announced."""
        best: CameraInfo | None = None
        for info in self.infos.values():
            if info.node == node and (best is None or not info.wall_time <= best.wall_time):
                best = info
        return best.url if best is not None else None

    def entry(self, camera: str) -> CameraEntry:
        info = self.infos.get(camera)
        node = self.owner(camera)
        available = self.online(node)
        if not available:
            state, reason = "unavailable", f"node {node} is offline" if node else "no node owns it"
        elif info is None:
            state, reason = "unavailable", f"node {node} has not announced it"
        else:
            state, reason = info.state, info.reason
        return CameraEntry(camera, node, self.url(node) if node else None, state, reason, available)

    def node_names(self) -> list[str]:
        return list(self.nodes)
