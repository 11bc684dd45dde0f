"""The fleet directory as the gateway sees it: camera → owning node, node → online and its trusted address.

Fed from the retained MQTT topics (livesight/fleet/topics.py) by mqtt_watch.py; no I/O here. The fleet config gives
the cameras to expect and their owners by the same rule the nodes use (so a camera whose node never came up is
still listed, as unavailable); a trusted `camera.info` overrides that with what the node itself announced.

Trust (docs/fleet.md, "Trust"): anyone who may publish on the broker can write these topics, so
- a node's **address** comes from the config (`fleet.nodes[].url`, or `fleet.node_url` with the node's id); only
  without one, from the node's newest announcement — when it is signed with the fleet's credential
  (`fleet.node_token`), or, in a fleet without a credential (loopback only), when it names a loopback address;
- with a credential, an announcement that does not verify is ignored whole (owner, state, address) and counted
  (`untrusted`); so is one naming a node that is not in `fleet.nodes` (every node of the fleet is listed there: a
  daemon refuses to start as a node that is not), and such a node's availability;
- a signed copy recorded on the broker and replayed later verifies too, so an announcement must be fresh
  (fleet/topics.py): issued no longer ago than `Trust.max_age_s` (2 × the nodes' announce interval by default) nor later
  than now, beyond CLOCK_SKEW_S either way (`stale`, `future`); with a credential, dated at all (`undated`); and its
  counter must move past the last one taken from the same run of the node (`replayed`: a lower or equal `seq` of the
  same `boot`, a run the node has since left, or an announcement older than one taken from another run). A node that
  restarts starts a new run (a new `boot`, its counter from 1) with a newer issue time: taken. Refusals are counted
  by reason (`refused`, in the gateway's /healthz and /metrics) and logged once per camera and reason.

Every lookup is O(1) (dicts and per-node indexes kept on each change): /healthz and /metrics cost O(cameras), never
O(cameras²). Waiting for changes: `await directory.wait_changed(version)` returns once the version moved past it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from livesight.config import is_loopback
from livesight.fleet import topics
from livesight.fleet.topics import CameraInfo

log = logging.getLogger(__name__)

MAX_NODES = 1024
MAX_CAMERAS = 16384
DEFAULT_MAX_AGE_S = 120.0  # 2 × the nodes' default announce interval (fleet.announce_interval_s: 60 s)
OLD_RUNS_KEPT = 8  # per node: the runs (boots) it has left, whose announcements are replays


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


@dataclass(frozen=True, slots=True)
class Trust:
    """Where node addresses may come from: the config's (`urls`, `template` with '{node}'), and announcements signed
    with `key`; without a key, announced loopback addresses only."""

    urls: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    key: str | None = None
    max_age_s: float = DEFAULT_MAX_AGE_S  # an announcement issued longer ago (beyond the clock skew) is stale

    def configured(self, node: str) -> str | None:
        url = self.urls.get(node)
        if url is None and self.template is not None:
            url = self.template.replace("{node}", node)
        return url

    def announced_ok(self, info: CameraInfo) -> bool:
        """May this announcement's address be used (the config gives none)?"""
        if self.key is not None:
            return True  # it verified (unverified ones never get in)
        return _loopback_url(info.url)


def _loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


class Directory:
    def __init__(
        self,
        expected: dict[str, str],
        *,
        nodes: list[str] | None = None,
        trust: Trust | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._expected = dict(expected)  # camera → owner by the fleet config
        self.trust = trust or Trust()
        self.clock = clock  # wall clock, compared with the nodes' issue times
        self.nodes: dict[str, NodeState] = {n: NodeState(False, time.time()) for n in (nodes or [])}
        self._fleet = set(nodes) if nodes is not None else None  # the only nodes there are (None: any)
        self.infos: dict[str, CameraInfo] = {}
        self.mqtt_connected = False
        self.synced = False  # set once the retained topics of the first connection had time to arrive
        self.version = 0
        self.ignored = 0  # malformed or over-limit directory messages
        self.untrusted = 0  # announcements that did not verify with the fleet's credential (ignored)
        self.refused: Counter[str] = Counter()  # reason (untrusted|foreign|stale|future|undated|replayed) → count
        self._taken: dict[str, CameraInfo] = {}  # camera → the last announcement taken (kept when it is cleared)
        self._left: dict[str, deque[str]] = {}  # node → runs (boots) it has left: their announcements are replays
        self._changed = asyncio.Event()
        # indexes, kept on every change
        self._by_node: dict[str, set[str]] = {}  # node → cameras it owns (config or announcement)
        for cam, node in self._expected.items():
            self._by_node.setdefault(node, set()).add(cam)
        self._announced: dict[str, str] = {}  # node → URL of its newest trusted announcement
        self._cameras: list[str] | None = list(self._expected)  # cached cameras() (None: rebuild)
        self._warned: set[tuple[str, str]] = set()  # (camera, reason) refusals logged

    # ---- updates (mqtt_watch.py) ---------------------------------------------------------------------------

    def apply(self, prefix: str, topic: str, payload: bytes) -> bool:
        """Apply one MQTT message; True when the directory changed."""
        parsed = topics.parse_topic(prefix, topic)
        if parsed is None:
            return False
        kind, key = parsed
        if kind == "node":
            if self._fleet is not None and key not in self._fleet:
                self.untrusted += 1
                return False
            return self.set_node(key, payload.strip() == topics.ONLINE)
        if not payload:  # a cleared retained info: the camera is gone from the directory
            old = self.infos.pop(key, None)
            if old is None:
                return False
            self._reindex(key, old, None)
            return self._changed_if(True)
        info = topics.decode_camera_info(payload)
        if info is None or info.camera != key:
            self.ignored += 1
            return False
        foreign = self._fleet is not None and info.node not in self._fleet
        if foreign or (self.trust.key is not None and not topics.verify_camera_info(info, self.trust.key)):
            self.untrusted += 1
            why = f"names node {info.node!r}, not one of fleet.nodes" if foreign else "not signed by the fleet"
            self._refuse(key, "foreign" if foreign else "untrusted", why)
            return False
        old = self.infos.get(key)
        if old == info:
            return False  # the same message again (a retained copy after a reconnect)
        stale = self._not_fresh(key, info)
        if stale is not None:
            self._refuse(key, *stale)
            return False
        if key not in self.infos and len(self.infos) >= MAX_CAMERAS:
            self.ignored += 1
            return False
        self._took(key, info)
        self.infos[key] = info
        if old is not None and old.same_news(info):
            return False  # a periodic re-announcement: fresher, nothing else changed
        self._reindex(key, old, info)
        if info.node not in self.nodes and len(self.nodes) < MAX_NODES:
            self.nodes[info.node] = NodeState(False, time.time())  # its availability message may follow
        return self._changed_if(True)

    def _not_fresh(self, camera: str, info: CameraInfo) -> tuple[str, str] | None:
        """(reason, why) when the announcement is not fresh (module docstring), else None."""
        skew = topics.CLOCK_SKEW_S
        if math.isnan(info.issued):
            if self.trust.key is not None:  # signed fleets date every announcement: an undated one is an old copy
                return "undated", "it carries no issue time (a node of an older version, or an old copy)"
            return None  # an older node in a fleet without a credential (loopback only): nothing to judge it by
        age = self.clock() - info.issued
        if age > self.trust.max_age_s + skew:
            return "stale", f"issued {age:.0f} s ago (more than {self.trust.max_age_s:g} s: a replayed copy?)"
        if age < -skew:
            return "future", f"issued {-age:.0f} s from now (the node's clock is off?)"
        last = self._taken.get(camera)
        if last is None or math.isnan(last.issued):
            return None
        if info.boot == last.boot and info.node == last.node:
            if info.seq <= last.seq:
                return "replayed", f"its counter {info.seq} is not past {last.seq} (already taken from this run)"
            return None
        if info.boot in self._left.get(info.node, ()):
            return "replayed", f"its run {info.boot} has ended (node {info.node} restarted since)"
        if info.issued < last.issued - skew:
            return "replayed", "older than the announcement taken from another run"
        return None

    def _took(self, camera: str, info: CameraInfo) -> None:
        """Remember the announcement taken (for replays); a new run of its node ends the node's previous one."""
        last = self._taken.get(camera)
        if last is not None and last.node == info.node and last.boot != info.boot and last.boot:
            left = self._left.setdefault(info.node, deque(maxlen=OLD_RUNS_KEPT))
            if last.boot not in left:
                left.append(last.boot)
        if camera in self._taken or len(self._taken) < MAX_CAMERAS:
            self._taken[camera] = info

    def _refuse(self, camera: str, reason: str, why: str) -> None:
        self.refused[reason] += 1
        if (camera, reason) not in self._warned and len(self._warned) < 1000:
            self._warned.add((camera, reason))
            log.warning("directory: ignoring an announcement of camera %s (%s): %s", camera, reason, why)

    def _reindex(self, camera: str, old: CameraInfo | None, new: CameraInfo | None) -> None:
        before = old.node if old is not None else self._expected.get(camera)
        after = new.node if new is not None else self._expected.get(camera)
        if before != after:
            if before is not None:
                self._by_node.get(before, set()).discard(camera)
            if after is not None:
                self._by_node.setdefault(after, set()).add(camera)
        if (old is None) != (new is None) and camera not in self._expected:
            self._cameras = None  # a camera only the directory knows came or went
        for node in {n.node for n in (old, new) if n is not None}:
            self._refresh_url(node)

    def _refresh_url(self, node: str) -> None:
        """The URL of the node's newest announcement whose address may be used (O(its cameras))."""
        best: CameraInfo | None = None
        for cam in self._by_node.get(node, ()):
            info = self.infos.get(cam)
            if info is None or info.node != node or not self.trust.announced_ok(info):
                continue
            if best is None or not info.wall_time <= best.wall_time:  # NaN (no time) counts as newest
                best = info
        if best is None:
            self._announced.pop(node, None)
        else:
            self._announced[node] = best.url

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

    # ---- queries (all O(1) but cameras() and cameras_of(), which return what they list) ---------------------

    def cameras(self) -> list[str]:
        """Every camera: the config's in config order, then cameras only the directory knows (sorted). Cached: do
        not change the list."""
        if self._cameras is None:
            extra = sorted(c for c in self.infos if c not in self._expected)
            self._cameras = list(self._expected) + extra
        return self._cameras

    def known(self, camera: str) -> bool:
        return camera in self._expected or camera in self.infos

    def owner(self, camera: str) -> str | None:
        info = self.infos.get(camera)
        return info.node if info is not None else self._expected.get(camera)

    def cameras_of(self, node: str) -> set[str]:
        return self._by_node.get(node, set())

    def online(self, node: str | None) -> bool:
        st = self.nodes.get(node) if node is not None else None
        return st is not None and st.online

    def url(self, node: str) -> str | None:
        """The node's WebSocket URL the gateway may use: the config's, else a trusted announcement's (None: none)."""
        return self.trust.configured(node) or self._announced.get(node)

    def url_source(self, node: str) -> str:
        """Where url() comes from: "config", "announced" or "none"."""
        if self.trust.configured(node) is not None:
            return "config"
        return "announced" if node in self._announced else "none"

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
