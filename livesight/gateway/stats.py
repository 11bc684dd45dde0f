"""The fleet-wide `stats` event, from the nodes' own (pure: no I/O, no clock of its own).

    merge_stats(per_node)        one event from the nodes' latest ones (all their cameras)
    pacer = StatsPacer()
    pacer.report(node, stats)    a node's `stats` arrived (over its link)
    pacer.forget(node)           its link went down
    event = pacer.next_event(now, clients=…)   every server.stats_interval_s: None when nothing changed

A fleet of thousands of cameras cannot send every camera's numbers to every client at every interval (5,000 cameras ≈
3 MB of JSON a time). The gateway's event carries the fleet's totals and the per-camera numbers of at most
CAMERAS_PER_EVENT cameras that changed since they were last sent, the longest waiting first: a fleet of up to that
many cameras sees all of them each time (as from a daemon); a larger one sees each camera in turn. A client merges
them per camera (the chat page does).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from livesight.protocols.contract.events import finite

CAMERAS_PER_EVENT = 64


def merge_stats(per_node: Iterable[dict[str, Any]], *, now: float | None = None) -> dict[str, Any]:
    """Cameras: the union of the nodes' per-camera numbers. Totals: integer totals summed, `drop_ratio` recomputed
    from the summed token counts, `ttft_ms_median` the median of the nodes' medians, `nodes` how many reported."""
    cameras: dict[str, Any] = {}
    nodes = list(per_node)
    for st in nodes:
        if isinstance(st.get("cameras"), dict):
            cameras.update(st["cameras"])
    return {
        "type": "stats",
        "wall_time": finite(time.time() if now is None else now),
        "cameras": cameras,
        "totals": merge_totals(nodes),
    }


def merge_totals(per_node: Iterable[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    medians: list[float] = []
    n = 0
    for st in per_node:
        n += 1
        node_totals = st.get("totals") if isinstance(st.get("totals"), dict) else {}
        for k, v in node_totals.items():
            if isinstance(v, int) and not isinstance(v, bool):
                totals[k] = totals.get(k, 0) + v
        m = node_totals.get("ttft_ms_median")
        if isinstance(m, int | float) and not isinstance(m, bool):
            medians.append(float(m))
    tt, kept = totals.get("tokens_total", 0), totals.get("tokens_kept", 0)
    totals["drop_ratio"] = round(1 - kept / tt, 4) if tt else 0.0
    totals["ttft_ms_median"] = sorted(medians)[len(medians) // 2] if medians else None
    totals["nodes"] = n
    return totals


class StatsPacer:
    """The nodes' latest numbers, and which cameras' numbers changed since they were last sent (oldest first)."""

    def __init__(self, per_event: int = CAMERAS_PER_EVENT) -> None:
        self.per_event = per_event
        self._nodes: dict[str, dict[str, Any]] = {}  # node → its latest stats event
        self._cameras: dict[str, Any] = {}  # camera → its latest numbers
        self._waiting: OrderedDict[str, None] = OrderedDict()  # cameras changed since last sent, oldest first
        self._changed = False

    def report(self, node: str, stats: dict[str, Any]) -> None:
        self._nodes[node] = stats
        self._changed = True
        cams = stats.get("cameras")
        if isinstance(cams, dict):
            for cam, numbers in cams.items():
                if isinstance(cam, str):
                    self._cameras[cam] = numbers
                    self._waiting[cam] = None  # keeps its place when already waiting

    def forget(self, node: str) -> None:
        if self._nodes.pop(node, None) is not None:
            self._changed = True

    def totals(self, *, clients: int) -> dict[str, Any]:
        totals = merge_totals(self._nodes.values())
        totals["clients"] = clients  # the gateway's own clients (each node counts the gateway's link as one)
        return totals

    def snapshot(self, now: float, *, clients: int) -> dict[str, Any]:
        """For a new client: the totals and the first CAMERAS_PER_EVENT cameras' latest numbers."""
        cams = dict(itertools.islice(self._cameras.items(), self.per_event))
        return {"type": "stats", "wall_time": finite(now), "cameras": cams, "totals": self.totals(clients=clients)}

    def next_event(self, now: float, *, clients: int) -> dict[str, Any] | None:
        if not self._changed:
            return None
        self._changed = False
        cams: dict[str, Any] = {}
        while self._waiting and len(cams) < self.per_event:
            cam, _ = self._waiting.popitem(last=False)
            cams[cam] = self._cameras[cam]
        if self._waiting:
            self._changed = True  # more to send next time even if no node reports meanwhile
        return {"type": "stats", "wall_time": finite(now), "cameras": cams, "totals": self.totals(clients=clients)}
