"""One client of the gateway: the daemon's WebSocket protocol (docs/protocol.md), routed camera by camera.

The session holds one `NodeLink` (a WebSocket connection of its own) per node, so each node sees this client as one
ordinary client: the node's per-connection limits, proactive flag, watch ownership and query ids apply unchanged,
and ids pass through untouched. What the gateway adds:

- `session.created` lists every camera of the fleet with its `node`; a camera whose node is not connected has
  state `unavailable`;
- `query` / `watch.add` go to the camera's owner; when that node is offline or unreachable the answer is an `error`
  `camera_unavailable` at once (no waiting); a query running on a node that goes away ends like any failed answer
  (`response.done` status `failed`, or `error camera_unavailable` if it had not started);
- when a node goes away its cameras get a `camera.state` `unavailable`; when it comes back, their real state, and the
  session's watches on it are added again (the client does nothing);
- `stats` from the nodes are merged into one fleet-wide `stats` event.

Overflow policy `disconnect_client`, as in the daemon: events are queued without waiting on a bounded queue; a client
that does not keep up is closed with code 4000. Nothing a node sends ever waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livesight.contract import events as ev
from livesight.contract.session import ClientLimits, TokenBucket
from livesight.gateway.directory import Directory
from livesight.gateway.stats import merge_stats
from livesight.gateway.upstream import NodeLink
from livesight.types import ResponseDone, ResponseStatus
from livesight.web.ws_endpoint import WSConn, close_too_slow

if TYPE_CHECKING:
    from livesight.gateway.server import GatewayMetrics

log = logging.getLogger(__name__)

FIRST_CONNECT_WAIT_S = 3.0  # session.created waits this long at most for the links to the online nodes


@dataclass
class _Query:
    node: str
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Watch:
    camera: str
    text: str
    node: str


class GatewaySession:
    def __init__(
        self,
        *,
        directory: Directory,
        conn: WSConn,
        session_id: str,
        queue_size: int,
        limits: ClientLimits,
        metrics: GatewayMetrics,
        max_message_bytes: int,
        token: str | None,
    ) -> None:
        self.directory = directory
        self.conn = conn
        self.session_id = session_id
        self.queue_size = queue_size
        self.limits = limits
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.token = token
        self.send_queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        cams = directory.cameras()
        self.camera = cams[0] if cams else ""
        self.proactive = True
        self.links: dict[str, NodeLink] = {}
        self.queries: dict[str, _Query] = {}
        self.watches: dict[str, _Watch] = {}
        self._readding: set[str] = set()  # watch ids re-added on a node that came back (their replies are ours)
        self._cam_state: dict[str, tuple[str, str]] = {}  # camera → (state, reason) as its node last said
        self._node_stats: dict[str, dict[str, Any]] = {}
        self._bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self._quiet_removes: set[str] = set()  # watch ids removed from their old node after a move
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self._hello_sent = False
        self._closing = False
        self.dropped_slow = False

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for node in self.directory.node_names():
                    self._start_link(node)
                with contextlib.suppress(TimeoutError):  # then the slow nodes' cameras start as unavailable
                    async with asyncio.timeout(FIRST_CONNECT_WAIT_S):
                        for link in list(self.links.values()):
                            await link.attempted.wait()
                self._send(self._session_created())
                self._hello_sent = True
                writer = tg.create_task(self._writer(), name=f"gw:{self.session_id}:writer")
                nodes = tg.create_task(self._follow_nodes(), name=f"gw:{self.session_id}:nodes")
                await self._reader()
                self._closing = True
                for t in (writer, nodes, *self._tasks):
                    t.cancel()
        finally:
            self._closing = True

    def _start_link(self, node: str) -> None:
        if node in self.links or self._tg is None:
            return
        link = NodeLink(node, self.directory, self, token=self.token)
        self.links[node] = link
        self._tasks.append(self._tg.create_task(link.run(), name=f"gw:{self.session_id}:link:{node}"))

    async def _follow_nodes(self) -> None:
        """Nodes that appear in the directory later (not in the config) get a link too."""
        version = self.directory.version
        while True:
            version = await self.directory.wait_changed(version)
            for node in self.directory.node_names():
                self._start_link(node)

    async def _reader(self) -> None:
        async for raw in self.conn.messages():
            self._dispatch(raw)

    async def _writer(self) -> None:
        while True:
            msg = await self.send_queue.get()
            if not await self.conn.send(msg):
                return

    # ---- outgoing ------------------------------------------------------------------------------------------

    def _send_raw(self, raw: str) -> None:
        if self._closing:
            return
        try:
            self.send_queue.put_nowait(raw)
        except asyncio.QueueFull:
            self._too_slow()

    def _send(self, event: dict[str, Any]) -> None:
        self._send_raw(ev.dumps(event))

    def _error(self, err: ev.ProtocolError) -> None:
        self.metrics.server.errors.labels(err.code).inc()
        self._send(ev.encode_error(err))

    def _too_slow(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.dropped_slow = True
        self.metrics.server.clients_dropped.labels("send_queue").inc()
        log.warning("gateway client %s is too slow (send queue full): disconnecting it", self.session_id)
        assert self._tg is not None
        self._tg.create_task(self._drop(), name=f"gw:{self.session_id}:drop")

    async def _drop(self) -> None:
        await close_too_slow(self.conn, self.session_id)

    def _camera_view(self, camera: str) -> dict[str, Any]:
        node = self.directory.owner(camera)
        state, reason = self._state(camera, node)
        return {"id": camera, "state": state, "reason": reason, "node": node}

    def _state(self, camera: str, node: str | None) -> tuple[str, str]:
        link = self.links.get(node) if node is not None else None
        if link is not None and link.connected:
            return self._cam_state.get(camera, ("connecting", ""))
        if node is None:
            return "unavailable", "no node owns this camera"
        if self.directory.online(node):
            return "unavailable", f"node {node} is online but not reachable from the gateway"
        return "unavailable", f"node {node} is offline"

    def _session_created(self) -> dict[str, Any]:
        limits = {
            "max_message_bytes": self.max_message_bytes,
            "max_text_chars": ev.MAX_TEXT_CHARS,
            "max_concurrent_queries": self.limits.max_concurrent_queries,
            "max_watches": self.limits.max_watches,
            "rate_per_s": self.limits.rate_per_s,
            "burst": self.limits.burst,
            "send_queue": self.queue_size,
        }
        cameras = [self._camera_view(c) for c in self.directory.cameras()]
        return ev.encode_session_created(
            session_id=self.session_id, cameras=cameras, camera=self.camera, proactive=self.proactive, limits=limits
        )

    def _camera_state_event(self, camera: str, state: str, reason: str) -> dict[str, Any]:
        return {"type": "camera.state", "camera": camera, "state": state, "reason": reason, "wall_time": time.time()}

    # ---- links (NodeLink's sink) ---------------------------------------------------------------------------

    def link_up(self, link: NodeLink, hello: dict[str, Any]) -> None:
        self.metrics.upstream_connects.labels(link.node).inc()
        for cam in hello.get("cameras") or []:
            if isinstance(cam, dict) and isinstance(cam.get("id"), str):
                self._cam_state[cam["id"]] = (str(cam.get("state") or "connecting"), str(cam.get("reason") or ""))
        if not self.proactive:
            link.send(ev.dumps({"type": "session.update", "proactive": False}))
        for wid, w in self.watches.items():
            if self.directory.owner(w.camera) == link.node:
                self._readding.add(wid)
                link.send(ev.dumps({"type": "watch.add", "id": wid, "text": w.text, "camera": w.camera}))
        if self._hello_sent:
            for cam in self._cameras_of(link.node):
                state, reason = self._cam_state.get(cam, ("connecting", ""))
                self._send(self._camera_state_event(cam, state, reason))

    def link_down(self, link: NodeLink, reason: str) -> None:
        node = link.node
        log.info("gateway client %s: node %s: %s", self.session_id, node, reason)
        self._node_stats.pop(node, None)
        for qid, q in list(self.queries.items()):
            if q.node != node:
                continue
            del self.queries[qid]
            why = f"node {node} went away ({reason})"
            if q.response_id is not None:
                done = ResponseDone(q.response_id, ResponseStatus.FAILED, "", error=why)
                self._send(ev.encode_response(done, query_id=qid, kind="query"))
            else:
                self._error(ev.ProtocolError(ev.ErrorCode.CAMERA_UNAVAILABLE, why, event_id=qid, event_type="query"))
        self._readding = {w for w in self._readding if w in self.watches and self.watches[w].node != node}
        if self._hello_sent:
            for cam in self._cameras_of(node):
                state, why = self._state(cam, node)
                self._send(self._camera_state_event(cam, state, why))

    def _cameras_of(self, node: str) -> list[str]:
        return [c for c in self.directory.cameras() if self.directory.owner(c) == node]

    def upstream_event(self, link: NodeLink, obj: dict[str, Any], raw: str) -> None:
        typ = obj.get("type")
        node = link.node
        if typ == "session.updated":
            return  # the gateway answers session.update itself
        if typ == "camera.state" and isinstance(obj.get("camera"), str):
            self._cam_state[obj["camera"]] = (str(obj.get("state")), str(obj.get("reason") or ""))
        elif typ == "stats":
            self._node_stats[node] = obj
            if self._hello_sent:
                self._send(merge_stats(self._node_stats.values()))
            return
        elif typ == "response.created" and obj.get("kind") == "query":
            q = self.queries.get(str(obj.get("query_id")))
            if q is not None and q.node == node:
                q.response_id = str(obj.get("response_id"))
        elif typ == "response.done" and obj.get("kind") == "query":
            qid = str(obj.get("query_id"))
            q = self.queries.get(qid)
            if q is not None and q.node == node:
                del self.queries[qid]
                self._observe_done(obj)
        elif typ == "error":
            if self._upstream_error(obj):
                return
        elif typ == "watch.added" and obj.get("id") in self._readding:
            self._readding.discard(obj["id"])
            return
        elif typ == "watch.removed" and obj.get("id") in self._quiet_removes:
            self._quiet_removes.discard(obj["id"])
            return
        if self._hello_sent:
            self._send_raw(raw)

    def _upstream_error(self, obj: dict[str, Any]) -> bool:
        """Bookkeeping for an error a node sent; True when the client must not see it."""
        eid, etype = obj.get("event_id"), obj.get("event_type")
        if etype == "query" and eid in self.queries:
            del self.queries[eid]
        elif etype == "watch.add" and eid in self.watches:
            del self.watches[eid]
            self._readding.discard(eid)
        elif etype == "session.update":
            return True
        self.metrics.server.errors.labels(str(obj.get("code"))).inc()
        return False

    def _observe_done(self, obj: dict[str, Any]) -> None:
        status = str(obj.get("status"))
        self.metrics.server.queries.labels(status).inc()
        ttft = obj.get("ttft_ms")
        if status == "completed" and isinstance(ttft, int | float):
            self.metrics.server.ttft.observe(ttft / 1000.0)

    # ---- incoming ------------------------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        if not self._bucket.take():
            self.metrics.server.messages.labels("rate_limited").inc()
            self._error(
                ev.ProtocolError(
                    ev.ErrorCode.RATE_LIMITED,
                    f"too many messages: at most {self.limits.rate_per_s:g}/s (burst {self.limits.burst}); "
                    "this one was ignored",
                )
            )
            return
        try:
            msg = ev.decode_client(raw)
        except ev.ProtocolError as e:
            self.metrics.server.messages.labels("invalid").inc()
            self._error(e)
            return
        typ = _TYPE_NAMES[type(msg)]
        self.metrics.server.messages.labels(typ).inc()
        try:
            if isinstance(msg, ev.SessionUpdate):
                self._session_update(msg)
            elif isinstance(msg, ev.Query):
                self._query(msg)
            elif isinstance(msg, ev.QueryCancel):
                self._cancel(msg)
            elif isinstance(msg, ev.WatchAdd):
                self._watch_add(msg)
            else:
                self._watch_remove(msg)
        except ev.ProtocolError as e:
            e.event_type = e.event_type or typ
            e.event_id = e.event_id or getattr(msg, "id", None) or msg.event_id
            self._error(e)
        except Exception as e:  # a bug must not take the connection down: report it and go on
            log.exception("gateway client %s: handling %s failed", self.session_id, typ)
            event_id = getattr(msg, "id", None) or msg.event_id
            self._error(ev.ProtocolError(ev.ErrorCode.INTERNAL, f"internal error: {e}", event_id=event_id))

    def _check_camera(self, camera: str | None) -> str:
        if camera is None:
            return self.camera
        cams = self.directory.cameras()
        if camera not in cams:
            known = ", ".join(cams)
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_CAMERA, f"unknown camera {camera!r} (cameras: {known})")
        return camera

    def _link_for(self, camera: str) -> NodeLink:
        node = self.directory.owner(camera)
        link = self.links.get(node) if node is not None else None
        if link is None or not link.connected:
            self.metrics.unavailable.inc()
            _, why = self._state(camera, node)
            raise ev.ProtocolError(ev.ErrorCode.CAMERA_UNAVAILABLE, f"camera {camera!r} is unavailable: {why}")
        return link

    def _forward(self, link: NodeLink, event: dict[str, Any]) -> None:
        if not link.send(ev.dumps(event)):
            raise ev.ProtocolError(ev.ErrorCode.BUSY, f"node {link.node} is not keeping up; try again")

    def _session_update(self, msg: ev.SessionUpdate) -> None:
        if msg.camera_set:
            cams = self.directory.cameras()
            self.camera = self._check_camera(msg.camera) if msg.camera is not None else (cams[0] if cams else "")
        if msg.proactive is not None:
            self.proactive = msg.proactive
            for link in self.links.values():
                link.send(ev.dumps({"type": "session.update", "proactive": msg.proactive}))
        self._send(ev.encode_session_updated(session_id=self.session_id, camera=self.camera, proactive=self.proactive))

    def _query(self, msg: ev.Query) -> None:
        if msg.id in self.queries:
            raise ev.ProtocolError(ev.ErrorCode.DUPLICATE_ID, f"query {msg.id!r} is still running")
        if len(self.queries) >= self.limits.max_concurrent_queries:
            raise ev.ProtocolError(
                ev.ErrorCode.BUSY,
                f"{len(self.queries)} queries already running in this session "
                f"(at most {self.limits.max_concurrent_queries}); wait for one to finish",
            )
        camera = self._check_camera(msg.camera)
        link = self._link_for(camera)
        self._forward(link, {"type": "query", "id": msg.id, "text": msg.text, "camera": camera})
        self.queries[msg.id] = _Query(link.node)

    def _cancel(self, msg: ev.QueryCancel) -> None:
        qid = msg.id if msg.id in self.queries else None
        if qid is None:
            qid = next((k for k, q in self.queries.items() if q.response_id == msg.id), None)
        if qid is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no running query {msg.id!r} in this session")
        link = self.links.get(self.queries[qid].node)
        if link is not None:
            link.send(ev.dumps({"type": "query.cancel", "id": qid}))

    def _watch_add(self, msg: ev.WatchAdd) -> None:
        if msg.id not in self.watches and len(self.watches) >= self.limits.max_watches:
            raise ev.ProtocolError(ev.ErrorCode.LIMIT, f"at most {self.limits.max_watches} watches per session")
        camera = self._check_camera(msg.camera)
        link = self._link_for(camera)
        old = self.watches.get(msg.id)
        prev = self.links.get(old.node) if old is not None and old.node != link.node else None
        if prev is not None and prev.send(ev.dumps({"type": "watch.remove", "id": msg.id})):  # moved to another node
            if len(self._quiet_removes) >= 4 * self.limits.max_watches:  # replies lost with their node: forget them
                self._quiet_removes.clear()
            self._quiet_removes.add(msg.id)
        self._forward(link, {"type": "watch.add", "id": msg.id, "text": msg.text, "camera": camera})
        self.watches[msg.id] = _Watch(camera, msg.text, link.node)
        self._readding.discard(msg.id)

    def _watch_remove(self, msg: ev.WatchRemove) -> None:
        w = self.watches.pop(msg.id, None)
        if w is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no watch {msg.id!r} in this session")
        self._readding.discard(msg.id)
        link = self.links.get(w.node)
        if link is None or not link.send(ev.dumps({"type": "watch.remove", "id": msg.id})):
            self._send(ev.encode_watch_removed(watch_id=msg.id))  # its node is gone: nothing to remove there


_TYPE_NAMES: dict[type, str] = {
    ev.SessionUpdate: "session.update",
    ev.Query: "query",
    ev.QueryCancel: "query.cancel",
    ev.WatchAdd: "watch.add",
    ev.WatchRemove: "watch.remove",
}
