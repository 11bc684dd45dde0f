"""The whole fleet as one `ServiceAPI`, for one gateway client: the daemon's session core runs on it unchanged.

Each client of the gateway has one `FleetService`, holding one `NodeLink` (a WebSocket connection of its own) per
node, so each node sees the client as one ordinary client of its own: the node's per-connection limits, proactive
flag and watch ownership apply, and query ids pass through untouched. The session core (contract/session.py) does
everything a daemon's session does: decoding, rate limits, ids, limits, routing of proactive and watch answers to the
client; this class only says where a camera lives and carries requests and answers to and from its node:

- `query` sends the question to the camera's owner and yields its answer's events; when that node is offline or
  unreachable it raises `CameraUnavailableError` at once (no waiting); when the node goes away mid-answer, too (the
  core ends the answer as failed);
- `add_watch` / `remove_watch` go to the owner (a watch moved to another camera's node is removed from the old one);
  when a node comes back, the client's watches on it are added again (their replies are the gateway's business);
- a node's scene changes and camera states reach the client as they are (`RelayedEvent`); when a node goes away its
  cameras get a `camera.state` `unavailable`, when it comes back their real state;
- `stats` from the nodes are merged into one fleet-wide `stats` event (stats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from livesight.contract import events as ev
from livesight.contract.api import (
    BroadcastEvent,
    BusyError,
    CameraUnavailableError,
    RelayedEvent,
    RemoteError,
    StatsSnapshot,
    WatchInfo,
)
from livesight.gateway.directory import Directory
from livesight.gateway.response_ids import ResponseIdGuard
from livesight.gateway.stats import merge_stats
from livesight.gateway.upstream import NodeLink
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseEvent, ResponseKind

log = logging.getLogger(__name__)

QUERY_BUFFER = 1024  # events of one answer waiting for the session (the session reads them at once)


@dataclass
class _Query:
    node: str
    events: asyncio.Queue[ResponseEvent | BaseException] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUERY_BUFFER)
    )
    response_id: str | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class _Watch:
    camera: str
    text: str
    node: str
    node_id: str  # the watch's id on its node


class _Subscription:
    """One bounded subscriber (the client's session); overflow closes it, as the daemon's hub does."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[BroadcastEvent | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False
        self.closed = False

    def put(self, item: BroadcastEvent) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[BroadcastEvent]:
        while True:
            if self.closed and self._queue.empty():
                return
            item = await self._queue.get()
            if item is None:
                return
            yield item


class FleetService:
    def __init__(
        self,
        directory: Directory,
        *,
        session_id: str,
        token: str | None,
        on_link_up: Callable[[str], None] | None = None,
        on_unavailable: Callable[[], None] | None = None,
        on_response_id_clash: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.session_id = session_id
        self.token = token
        self.links: dict[str, NodeLink] = {}
        self.proactive = True
        self._on_link_up = on_link_up  # (node): counted by the server's metrics
        self._on_unavailable = on_unavailable  # a question or watch refused at once: its node is not connected
        self._queries: dict[str, _Query] = {}  # query id → its answer in flight
        self._watches: dict[str, _Watch] = {}  # service watch id → where it lives
        self._by_node_id: dict[str, str] = {}  # a watch's id on its node → service watch id
        self._quiet: set[str] = set()  # node watch ids whose watch.added / watch.removed replies are ours
        self._watch_ids = itertools.count(1)
        self._cam_state: dict[str, tuple[str, str]] = {}  # camera → (state, reason) as its node last said
        self._node_stats: dict[str, dict[str, Any]] = {}
        self._sub: _Subscription | None = None
        self._on_clash = on_response_id_clash  # counted by the server's metrics
        self._response_ids = ResponseIdGuard(on_clash=self._response_id_clash)  # one client, every node

    # ---- where cameras are ----------------------------------------------------------------------------------

    def camera_ids(self) -> list[str]:
        return self.directory.cameras()

    def camera_views(self) -> list[dict[str, Any]]:
        """The cameras of `session.created`: every camera of the fleet with its node and state."""
        out = []
        for camera in self.directory.cameras():
            node = self.directory.owner(camera)
            state, reason = self._state(camera, node)
            out.append({"id": camera, "state": state, "reason": reason, "node": node})
        return out

    def _state(self, camera: str, node: str | None) -> tuple[str, str]:
        link = self.links.get(node) if node is not None else None
        if link is not None and link.connected:
            return self._cam_state.get(camera, ("connecting", ""))
        if node is None:
            return "unavailable", "no node owns this camera"
        if self.directory.online(node):
            return "unavailable", f"node {node} is online but not reachable from the gateway"
        return "unavailable", f"node {node} is offline"

    def _link_for(self, camera: str) -> NodeLink:
        node = self.directory.owner(camera)
        link = self.links.get(node) if node is not None else None
        if link is None or not link.connected:
            if self._on_unavailable is not None:
                self._on_unavailable()
            _, why = self._state(camera, node)
            raise CameraUnavailableError(f"camera {camera!r} is unavailable: {why}")
        return link

    def _send(self, link: NodeLink, event: dict[str, Any]) -> None:
        if not link.send(ev.dumps(event)):
            raise BusyError(f"node {link.node} is not keeping up; try again")

    def _cameras_of(self, node: str) -> list[str]:
        return [c for c in self.directory.cameras() if self.directory.owner(c) == node]

    # ---- ServiceAPI -----------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        cams = {c["id"]: {"state": c["state"], "reason": c["reason"]} for c in self.camera_views()}
        return {"status": "ok", "cameras": cams}

    def stats(self) -> StatsSnapshot:
        merged = merge_stats(self._node_stats.values())
        return StatsSnapshot(merged["wall_time"], merged["cameras"], merged["totals"])

    def subscribe(self, *, maxsize: int) -> _Subscription:
        self._sub = _Subscription(maxsize)
        return self._sub

    def _publish(self, item: BroadcastEvent) -> None:
        if self._sub is not None:
            self._sub.put(item)

    async def query(self, *, camera: str | None, text: str, query_id: str | None) -> AsyncIterator[ResponseEvent]:
        assert camera is not None and query_id is not None  # the session core always names both
        link = self._link_for(camera)
        q = _Query(link.node)
        self._queries[query_id] = q
        try:
            self._send(link, {"type": "query", "id": query_id, "text": text, "camera": camera})
            while True:
                item = await q.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, ResponseDone):
                    q.done = True
                    return
        finally:
            if self._queries.get(query_id) is q:
                del self._queries[query_id]
            if not q.done and link.connected:  # the reader stopped early: the node stops generating
                link.send(ev.dumps({"type": "query.cancel", "id": query_id}))

    def cancel(self, response_id: str) -> bool:
        for qid, q in self._queries.items():
            if q.response_id == response_id:
                link = self.links.get(q.node)
                return link is not None and link.send(ev.dumps({"type": "query.cancel", "id": qid}))
        return False

    def add_watch(self, *, camera: str | None, text: str, watch_id: str) -> None:
        assert camera is not None
        link = self._link_for(camera)
        old = self._watches.get(watch_id)
        node_id = old.node_id if old is not None else f"w{next(self._watch_ids)}"
        if old is not None and old.node != link.node:  # moved to another node: removed from the old one, quietly
            prev = self.links.get(old.node)
            if prev is not None and prev.send(ev.dumps({"type": "watch.remove", "id": node_id})):
                self._quiet.add(node_id)
        self._send(link, {"type": "watch.add", "id": node_id, "text": text, "camera": camera})
        self._quiet.add(node_id)
        self._watches[watch_id] = _Watch(camera, text, link.node, node_id)
        self._by_node_id[node_id] = watch_id

    def remove_watch(self, watch_id: str) -> bool:
        w = self._watches.pop(watch_id, None)
        if w is None:
            return False
        self._by_node_id.pop(w.node_id, None)
        link = self.links.get(w.node)
        if link is not None and link.send(ev.dumps({"type": "watch.remove", "id": w.node_id})):
            self._quiet.add(w.node_id)
        return True

    def watch_list(self) -> list[WatchInfo]:
        return [WatchInfo(wid, w.camera, w.text, None) for wid, w in self._watches.items()]

    def set_proactive(self, on: bool) -> None:
        """The client turned proactive answers on or off: every node filters them too (less traffic)."""
        self.proactive = on
        for link in self.links.values():
            link.send(ev.dumps({"type": "session.update", "proactive": on}))

    # ---- the links (NodeLink's sink) ------------------------------------------------------------------------

    def link_up(self, link: NodeLink, hello: dict[str, Any]) -> None:
        if self._on_link_up is not None:
            self._on_link_up(link.node)
        for cam in hello.get("cameras") or []:
            if isinstance(cam, dict) and isinstance(cam.get("id"), str):
                self._cam_state[cam["id"]] = (str(cam.get("state") or "connecting"), str(cam.get("reason") or ""))
        if not self.proactive:
            link.send(ev.dumps({"type": "session.update", "proactive": False}))
        for w in self._watches.values():
            if self.directory.owner(w.camera) == link.node:  # added again on a node that came back
                self._quiet.add(w.node_id)
                link.send(ev.dumps({"type": "watch.add", "id": w.node_id, "text": w.text, "camera": w.camera}))
        for cam in self._cameras_of(link.node):
            state, reason = self._cam_state.get(cam, ("connecting", ""))
            self._publish(RelayedEvent(_camera_state(cam, state, reason)))

    def link_down(self, link: NodeLink, reason: str) -> None:
        node = link.node
        log.info("gateway client %s: node %s: %s", self.session_id, node, reason)
        self._node_stats.pop(node, None)
        self._response_ids.forget_node(node)
        gone = CameraUnavailableError(f"node {node} went away ({reason})")
        for q in self._queries.values():
            if q.node == node and not q.done:
                with contextlib.suppress(asyncio.QueueFull):
                    q.events.put_nowait(gone)
        for cam in self._cameras_of(node):
            state, why = self._state(cam, node)
            self._publish(RelayedEvent(_camera_state(cam, state, why)))

    def upstream_event(self, link: NodeLink, obj: dict[str, Any], raw: str) -> None:
        typ = obj.get("type")
        if typ in ("session.updated", "session.created"):
            return  # the gateway answers session.update itself
        if typ == "camera.state" and isinstance(obj.get("camera"), str):
            self._cam_state[obj["camera"]] = (str(obj.get("state")), str(obj.get("reason") or ""))
        elif typ == "stats":
            self._node_stats[link.node] = obj
            self._publish(RelayedEvent(merge_stats(self._node_stats.values())))
            return
        elif isinstance(typ, str) and typ.startswith("response."):
            self._response(link, obj)
            return
        elif typ == "error":
            self._error(obj)
            return
        elif typ in ("watch.added", "watch.removed"):
            if obj.get("id") in self._quiet:
                self._quiet.discard(obj["id"])
            return  # the session core confirmed the client's own request already
        self._publish(RelayedEvent(obj))

    def _response(self, link: NodeLink, obj: dict[str, Any]) -> None:
        rid = obj.get("response_id")
        if isinstance(rid, str):  # a clash with another node's live response is renamed on the way out
            obj["response_id"] = self._response_ids.outgoing(link.node, str(obj.get("type")), rid)
        item = ev.decode_response(obj)
        if item is None:
            return
        qid = obj.get("query_id")
        q = self._queries.get(qid) if obj.get("kind") == ResponseKind.QUERY.value and isinstance(qid, str) else None
        if q is not None:
            if q.node != link.node:
                return
            if isinstance(item, ResponseCreated):
                q.response_id = item.response_id
            try:
                q.events.put_nowait(item)
            except asyncio.QueueFull:
                q.events.get_nowait()  # make room for the reason: the answer fails, the session goes on
                q.events.put_nowait(BusyError(f"answer from node {link.node} larger than {QUERY_BUFFER} events"))
            return
        if isinstance(item, ResponseCreated) and item.kind is ResponseKind.WATCH:
            watch_id = self._by_node_id.get(item.watch_id or "")
            if watch_id is None:
                return
            item = ResponseCreated(item.response_id, item.camera, item.kind, None, watch_id, item.scene, item.pts)
        if isinstance(item, ResponseCreated | ResponseDelta | ResponseDone):
            self._publish(item)

    def _response_id_clash(self, response_id: str, holder: str, sender: str) -> None:
        log.warning(
            "gateway client %s: nodes %s and %s both sent a live response %s: the second renamed for the client",
            self.session_id,
            holder,
            sender,
            response_id,
        )
        if self._on_clash is not None:
            self._on_clash()

    def _error(self, obj: dict[str, Any]) -> None:
        """A node refused something: a query's error ends that query; a watch's error drops the watch."""
        eid, etype = obj.get("event_id"), obj.get("event_type")
        err = RemoteError(str(obj.get("code") or "internal_error"), str(obj.get("message") or "refused by the node"))
        if etype == "query" and isinstance(eid, str) and eid in self._queries:
            with contextlib.suppress(asyncio.QueueFull):
                self._queries[eid].events.put_nowait(err)
            return
        if etype == "watch.add" and isinstance(eid, str) and eid in self._by_node_id:
            watch_id = self._by_node_id.pop(eid)
            self._watches.pop(watch_id, None)
            self._quiet.discard(eid)
            client_id = watch_id.split(":", 1)[-1]
            self._publish(RelayedEvent({**obj, "event_id": client_id}))
            return
        if etype in ("session.update", "watch.remove"):
            return  # the gateway's own bookkeeping messages
        self._publish(RelayedEvent(obj))


def _camera_state(camera: str, state: str, reason: str) -> dict[str, Any]:
    return {"type": "camera.state", "camera": camera, "state": state, "reason": reason, "wall_time": time.time()}
