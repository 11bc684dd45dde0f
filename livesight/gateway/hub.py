"""Every gateway client over one link per node: the links, the id maps, and the fan-out of what the nodes broadcast.

    hub = UpstreamHub(directory, token=fleet_token, stats_interval_s=2.0)
    task = tg.create_task(hub.run())        # one NodeLink per node (nodes that appear later too), the stats ticker
    hub.register(client) / hub.unregister(client)          # a client: a `HubClient` (fleet_service.py's FleetService)

Ids (docs/fleet.md, "Links"): a client's query gets a link id `q<n>` and its watch a link id `w<n>` (unique on the
link: one counter for the gateway), which is all the node sees; answers come back under those ids and go to their
client under the client's own. Response ids are the nodes' (unique across the fleet); each client's ResponseIdGuard
renames a clash on the way out, should an old node send one.

What goes where:
- a query's events (kind `query`) → its client only; a watch's (kind `watch`) → the client that owns the watch;
- proactive answers → every client whose proactive switch is on (the link's own switch is on while any client's is);
- `scene.change`, `camera.state` and anything else a node broadcasts → every client, as the node encoded it (no
  re-encoding per client); `stats` → kept per node, one fleet `stats` event every interval (stats.py), encoded once;
- a link that goes down fails only what was in flight on it (each with `camera_unavailable`) and tells every client
  its cameras are `unavailable`; when it comes back, every client's watches on it are added again and the cameras'
  real states go out.

Nothing here waits for a client: each has a bounded subscription (overflow drops the client, as on a daemon) and
bounded per-answer buffers; the links are read as fast as they come.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from livesight.gateway.directory import Directory
from livesight.gateway.stats import StatsPacer
from livesight.gateway.upstream import NodeLink
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import BusyError, CameraUnavailableError, RelayedEvent, RemoteError
from livesight.types import ResponseEvent

log = logging.getLogger(__name__)

QUERY_BUFFER = 1024  # events of one answer waiting for its session (the session reads them at once)


class HubClient(Protocol):
    """What the hub needs of a client (fleet_service.py's FleetService is the one there is): the hub sits below the
    clients and knows them only by this, so the two modules import one way."""

    proactive: bool  # the client's proactive switch: set through `UpstreamHub.set_proactive` only

    def publish(self, item: RelayedEvent) -> None:
        """Something every client hears (a node's broadcast as it encoded it, the fleet's stats)."""

    def query_event(self, route: QueryRoute, node: str, obj: dict[str, Any]) -> None:
        """An event of the client's question `route`, as its node sent it."""

    def watch_event(self, route: WatchRoute, node: str, obj: dict[str, Any]) -> None:
        """An answer to the client's watch `route`, as its node sent it."""

    def watch_refused(self, route: WatchRoute, obj: dict[str, Any]) -> None:
        """The node refused the client's watch `route` (its `error` event); the hub has dropped the route."""

    def proactive_event(self, node: str, event_type: str, item: ResponseEvent) -> None:
        """A proactive answer's event from `node` (only while the client's switch is on)."""

    def forget_node(self, node: str) -> None:
        """`node`'s link went down: whatever the client keeps per node goes."""


@dataclass(eq=False)
class QueryRoute:
    """One client's question on one link."""

    link_id: str
    node: str
    client: HubClient
    events: asyncio.Queue[ResponseEvent | BaseException] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUERY_BUFFER)
    )
    response_id: str | None = None  # as the client sees it
    done: bool = False

    def fail(self, e: BaseException) -> None:
        """End it with `e` (the client's reader raises it), making room if its buffer is full."""
        if self.done:
            return
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(e)


@dataclass(eq=False)
class WatchRoute:
    """One client's watch on one link."""

    link_id: str
    client: HubClient
    watch_id: str  # the service watch id the client's session core knows
    camera: str
    text: str
    node: str


class UpstreamHub:
    def __init__(
        self,
        directory: Directory,
        *,
        token: str | None,
        stats_interval_s: float = 2.0,
        on_link_up: Callable[[str], None] | None = None,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.token = token
        self.stats_interval_s = stats_interval_s
        self.links: dict[str, NodeLink] = {}
        self.clients: set[HubClient] = set()
        self.stats = StatsPacer()
        self.version = 0  # moves when a camera's state or a link changes (health caches key on it)
        self.unroutable = 0  # node events for a query or watch no client holds any more (late, or cancelled)
        self._on_link_up = on_link_up
        self._on_unavailable = on_unavailable
        self._ids = itertools.count(1)
        self._queries: dict[str, QueryRoute] = {}  # link query id → route
        self._running: dict[str, int] = {}  # node → questions in flight on its link
        self._watches: dict[str, WatchRoute] = {}  # link watch id → route
        self._cam_state: dict[str, tuple[str, str]] = {}  # camera → (state, reason) as its node last said
        self._proactive_on = 0  # clients with proactive on
        self._link_proactive = True  # what the links were last told
        self._tg: asyncio.TaskGroup | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """One link per node of the directory (and of any that appears later), and the stats ticker; until
        cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for node in self.directory.node_names():
                self._start_link(node)
            tg.create_task(self._stats_ticker(), name="gateway:stats")
            version = self.directory.version
            while True:
                version = await self.directory.wait_changed(version)
                for node in self.directory.node_names():
                    self._start_link(node)

    def _start_link(self, node: str) -> None:
        if node in self.links or self._tg is None:
            return
        link = NodeLink(node, self.directory, self, token=self.token)
        self.links[node] = link
        self._tg.create_task(link.run(), name=f"gateway:link:{node}")

    async def first_attempts(self, within_s: float) -> None:
        """Until every link tried once (a new client's session.created then shows the real states), at most
        `within_s`."""
        try:
            async with asyncio.timeout(within_s):
                for link in list(self.links.values()):
                    await link.attempted.wait()
        except TimeoutError:
            pass

    async def _stats_ticker(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            event = self.stats.next_event(time.time(), clients=len(self.clients))
            if event is not None:
                self._broadcast(RelayedEvent(event, ev.dumps(event)))

    # ---- clients --------------------------------------------------------------------------------------------

    def register(self, client: HubClient) -> None:
        self.clients.add(client)
        if client.proactive:
            self._proactive_on += 1
            self._tell_proactive()

    def unregister(self, client: HubClient) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        if client.proactive:
            self._proactive_on -= 1
            self._tell_proactive()
        for wid, route in list(self._watches.items()):
            if route.client is client:
                self._drop_watch(wid, route)
        for q in list(self._queries.values()):
            if q.client is client:
                self._forget(q)
                self._cancel_on_node(q)

    def set_proactive(self, client: HubClient, on: bool) -> None:
        if client.proactive == on:
            return
        client.proactive = on
        if client in self.clients:
            self._proactive_on += 1 if on else -1
            self._tell_proactive()

    def _tell_proactive(self) -> None:
        """The links carry proactive answers while any client wants them (the node filters: less traffic)."""
        want = self._proactive_on > 0
        if want == self._link_proactive:
            return
        self._link_proactive = want
        for link in self.links.values():
            link.send(ev.dumps({"type": "session.update", "proactive": want}))

    # ---- where cameras are ----------------------------------------------------------------------------------

    def camera_state(self, camera: str) -> tuple[str, str]:
        node = self.directory.owner(camera)
        link = self.links.get(node) if node is not None else None
        if link is not None and link.connected:
            return self._cam_state.get(camera, ("connecting", ""))
        return "unavailable", self.unavailable_reason(node)

    def unavailable_reason(self, node: str | None) -> str:
        if node is None:
            return "no node owns this camera"
        if not self.directory.online(node):
            return f"node {node} is offline"
        if self.directory.url(node) is None:
            return f"node {node} has no trusted address (fleet.nodes, fleet.node_url, or a signed announcement)"
        return f"node {node} is online but not reachable from the gateway"

    def link_for(self, camera: str) -> NodeLink:
        """The connected link to the camera's node; CameraUnavailableError (counted) at once otherwise."""
        node = self.directory.owner(camera)
        link = self.links.get(node) if node is not None else None
        if link is None or not link.connected:
            if self._on_unavailable is not None:
                self._on_unavailable()
            raise CameraUnavailableError(f"camera {camera!r} is unavailable: {self.unavailable_reason(node)}")
        return link

    def snapshot_stats(self) -> dict[str, Any]:
        return self.stats.snapshot(time.time(), clients=len(self.clients))

    # ---- requests from clients ------------------------------------------------------------------------------

    def open_query(self, client: HubClient, camera: str, text: str) -> QueryRoute:
        link = self.link_for(camera)
        running = self._running.get(link.node, 0)
        if running >= link.max_queries:
            raise BusyError(f"node {link.node} has {running} questions running through this gateway; try again")
        route = QueryRoute(f"q{next(self._ids)}", link.node, client)
        if not link.send(ev.dumps({"type": "query", "id": route.link_id, "text": text, "camera": camera})):
            raise BusyError(f"node {link.node} is not keeping up; try again")
        self._queries[route.link_id] = route
        self._running[link.node] = running + 1
        return route

    def close_query(self, route: QueryRoute) -> None:
        """The client stopped reading: forget it; a question still running on its node is cancelled there."""
        if self._queries.get(route.link_id) is route:
            self._forget(route)
            if not route.done:
                self._cancel_on_node(route)

    def _forget(self, route: QueryRoute) -> None:
        if self._queries.pop(route.link_id, None) is not None:
            self._running[route.node] = max(0, self._running.get(route.node, 1) - 1)

    def cancel_query(self, route: QueryRoute) -> bool:
        link = self.links.get(route.node)
        return link is not None and link.send(ev.dumps({"type": "query.cancel", "id": route.link_id}))

    def _cancel_on_node(self, route: QueryRoute) -> None:
        link = self.links.get(route.node)
        if link is not None and link.connected:
            link.send(ev.dumps({"type": "query.cancel", "id": route.link_id}))

    def add_watch(self, client: HubClient, camera: str, text: str, watch_id: str, old: WatchRoute | None) -> WatchRoute:
        link = self.link_for(camera)
        if old is not None:  # replaced: the old one goes (quietly) from wherever it lived
            self._drop_watch(old.link_id, old)
        route = WatchRoute(f"w{next(self._ids)}", client, watch_id, camera, text, link.node)
        if not link.send(ev.dumps({"type": "watch.add", "id": route.link_id, "text": text, "camera": camera})):
            raise BusyError(f"node {link.node} is not keeping up; try again")
        self._watches[route.link_id] = route
        return route

    def remove_watch(self, route: WatchRoute) -> None:
        self._drop_watch(route.link_id, route)

    def _drop_watch(self, link_id: str, route: WatchRoute) -> None:
        if self._watches.get(link_id) is not route:
            return
        del self._watches[link_id]
        link = self.links.get(route.node)
        if link is not None and link.connected:
            link.send(ev.dumps({"type": "watch.remove", "id": link_id}))

    # ---- the links (NodeLink's sink) ------------------------------------------------------------------------

    def link_up(self, link: NodeLink, hello: dict[str, Any]) -> None:
        if self._on_link_up is not None:
            self._on_link_up(link.node)
        self.version += 1
        for cam in hello.get("cameras") or []:
            if isinstance(cam, dict) and isinstance(cam.get("id"), str):
                self._cam_state[cam["id"]] = (str(cam.get("state") or "connecting"), str(cam.get("reason") or ""))
        if not self._link_proactive:
            link.send(ev.dumps({"type": "session.update", "proactive": False}))
        for route in self._watches.values():
            if route.node == link.node:  # added again on a node that came back (its replies are the hub's)
                add = {"type": "watch.add", "id": route.link_id, "text": route.text, "camera": route.camera}
                link.send(ev.dumps(add))
        for cam in self.directory.cameras_of(link.node):
            state, reason = self._cam_state.get(cam, ("connecting", ""))
            self._broadcast_event(_camera_state(cam, state, reason))

    def link_down(self, link: NodeLink, reason: str) -> None:
        node = link.node
        log.info("gateway: link to node %s down: %s", node, reason)
        self.version += 1
        self.stats.forget(node)
        gone = CameraUnavailableError(f"node {node} went away ({reason})")
        for q in list(self._queries.values()):
            if q.node == node:
                self._forget(q)
                q.fail(gone)
        self._running.pop(node, None)
        for client in self.clients:
            client.forget_node(node)
        for cam in self.directory.cameras_of(node):
            self._broadcast_event(_camera_state(cam, "unavailable", self.unavailable_reason(node)))

    def upstream_event(self, link: NodeLink, obj: dict[str, Any], raw: str) -> None:
        typ = obj.get("type")
        if typ in ("session.updated", "session.created", "watch.added", "watch.removed"):
            return  # replies to the hub's own messages (a client's session core confirmed its request already)
        if isinstance(typ, str) and typ.startswith("response."):
            self._response(link, obj)
            return
        if typ == "stats":
            self.stats.report(link.node, obj)
            return
        if typ == "error":
            self._error(link, obj)
            return
        if typ == "camera.state" and isinstance(obj.get("camera"), str):
            self._cam_state[obj["camera"]] = (str(obj.get("state")), str(obj.get("reason") or ""))
            self.version += 1
        self._broadcast(RelayedEvent(obj, raw))

    def _response(self, link: NodeLink, obj: dict[str, Any]) -> None:
        kind = obj.get("kind")
        if kind == "query":
            q = self._queries.get(obj.get("query_id"))  # type: ignore[arg-type]
            if q is None or q.node != link.node:
                self.unroutable += 1
                return
            q.client.query_event(q, link.node, obj)
            if q.done:
                self._forget(q)
        elif kind == "watch":
            w = self._watches.get(obj.get("watch_id"))  # type: ignore[arg-type]
            if w is None or w.node != link.node:
                self.unroutable += 1
                return
            w.client.watch_event(w, link.node, obj)
        elif kind == "proactive":
            item = ev.decode_response(obj)
            if item is None:
                return
            for client in self.clients:
                if client.proactive:
                    client.proactive_event(link.node, str(obj.get("type")), item)

    def _error(self, link: NodeLink, obj: dict[str, Any]) -> None:
        """A node refused something: a question's error ends that question; a watch's error drops the watch."""
        eid, etype = obj.get("event_id"), obj.get("event_type")
        err = RemoteError(str(obj.get("code") or "internal_error"), str(obj.get("message") or "refused by the node"))
        if etype == "query" and isinstance(eid, str) and (q := self._queries.get(eid)) is not None:
            self._forget(q)
            q.fail(err)
            return
        if etype == "watch.add" and isinstance(eid, str) and (w := self._watches.pop(eid, None)) is not None:
            w.client.watch_refused(w, obj)
            return
        if etype in ("session.update", "watch.remove", "query.cancel"):
            return  # the hub's own bookkeeping messages
        log.warning("gateway: node %s sent an error for no client: %s", link.node, str(obj)[:300])
        self.unroutable += 1

    # ---- fan-out --------------------------------------------------------------------------------------------

    def _broadcast_event(self, event: dict[str, Any]) -> None:
        self._broadcast(RelayedEvent(event, ev.dumps(event)))

    def _broadcast(self, item: RelayedEvent) -> None:
        for client in self.clients:
            client.publish(item)


def _camera_state(camera: str, state: str, reason: str) -> dict[str, Any]:
    return {"type": "camera.state", "camera": camera, "state": state, "reason": reason, "wall_time": time.time()}
