"""The whole fleet as one `ServiceAPI`, for one gateway client: the daemon's session core runs on it unchanged.

Each client of the gateway (a WebSocket session, or the gateway's OpenAI-compatible API) has one `FleetService`; all
of them share the gateway's one link per node (hub.py). The session core (protocols/contract/session.py) does everything
a daemon's session does: decoding, rate limits, ids, per-client limits, routing of proactive and watch answers to the
client; this class only says where a camera lives and carries the client's requests and answers to and from the
camera's node through the hub:

- `query` sends the question to the camera's owner (under a link id) and yields its answer's events; when that node
  is not connected it raises `CameraUnavailableError` at once (no waiting); when the link goes down mid-answer the
  answer ends `failed` with code `camera_unavailable` (or the error, if it had not started);
- `add_watch` / `remove_watch` go to the owner; when a node comes back, the client's watches on it are added again;
- what the nodes broadcast reaches the client through its bounded subscription (a client that falls behind is
  dropped, as on a daemon): scene changes and camera states as the nodes encoded them, proactive answers while its
  switch is on, the fleet's `stats` (stats.py);
- its `ResponseIdGuard` keeps two nodes' live answers apart for this client, should an old node reuse an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from livesight.gateway.hub import QueryRoute, UpstreamHub, WatchRoute
from livesight.gateway.response_ids import ResponseIdGuard
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import (
    BroadcastEvent,
    BusyError,
    RelayedEvent,
    ServiceError,
    StatsSnapshot,
    WatchInfo,
)
from livesight.types import ResponseCreated, ResponseDone, ResponseEvent, ResponseStatus

log = logging.getLogger(__name__)


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
        hub: UpstreamHub,
        *,
        session_id: str,
        on_response_id_clash: Callable[[], None] | None = None,
    ) -> None:
        self.hub = hub
        self.directory = hub.directory
        self.session_id = session_id
        self.proactive = True  # set through the hub (it counts who wants proactive answers)
        self._queries: dict[str, QueryRoute] = {}  # the client's response id → its question's route (for cancel)
        self._watches: dict[str, WatchRoute] = {}  # service watch id → where it lives
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
            state, reason = self.hub.camera_state(camera)
            out.append({"id": camera, "state": state, "reason": reason, "node": self.directory.owner(camera)})
        return out

    # ---- ServiceAPI -----------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        cams = {}
        for camera in self.directory.cameras():
            state, reason = self.hub.camera_state(camera)
            cams[camera] = {"state": state, "reason": reason}
        return {"status": "ok", "cameras": cams}

    def stats(self) -> StatsSnapshot:
        snap = self.hub.snapshot_stats()
        return StatsSnapshot(snap["wall_time"], snap["cameras"], snap["totals"])

    def subscribe(self, *, maxsize: int) -> _Subscription:
        self._sub = _Subscription(maxsize)
        return self._sub

    def publish(self, item: BroadcastEvent) -> None:
        if self._sub is not None:
            self._sub.put(item)

    async def query(self, *, camera: str | None, text: str, query_id: str | None) -> AsyncIterator[ResponseEvent]:
        if camera is None:
            cams = self.directory.cameras()
            camera = cams[0] if cams else ""
        route = self.hub.open_query(self, camera, text)  # CameraUnavailableError / BusyError before any event
        try:
            while True:
                item = await route.events.get()
                if isinstance(item, BaseException):
                    if route.response_id is not None and isinstance(item, ServiceError):
                        # the answer had begun: it ends failed, with the reason's code (e.g. camera_unavailable)
                        route.done = True
                        yield ResponseDone(
                            route.response_id, ResponseStatus.FAILED, "", error=str(item), code=item.code
                        )
                        return
                    raise item
                if isinstance(item, ResponseCreated):
                    route.response_id = item.response_id
                    self._queries[item.response_id] = route
                yield item
                if isinstance(item, ResponseDone):
                    return
        finally:
            if route.response_id is not None:
                self._queries.pop(route.response_id, None)
            self.hub.close_query(route)

    def cancel(self, response_id: str) -> bool:
        route = self._queries.get(response_id)
        return route is not None and not route.done and self.hub.cancel_query(route)

    def add_watch(self, *, camera: str | None, text: str, watch_id: str) -> None:
        if camera is None:
            cams = self.directory.cameras()
            camera = cams[0] if cams else ""
        self._watches[watch_id] = self.hub.add_watch(self, camera, text, watch_id, self._watches.get(watch_id))

    def remove_watch(self, watch_id: str) -> bool:
        route = self._watches.pop(watch_id, None)
        if route is None:
            return False
        self.hub.remove_watch(route)
        return True

    def watch_list(self) -> list[WatchInfo]:
        return [WatchInfo(wid, w.camera, w.text, None) for wid, w in self._watches.items()]

    def set_proactive(self, on: bool) -> None:
        """The client turned proactive answers on or off (the hub keeps the links' own switch in step)."""
        self.hub.set_proactive(self, on)

    # ---- from the hub ---------------------------------------------------------------------------------------

    def query_event(self, route: QueryRoute, node: str, obj: dict[str, Any]) -> None:
        item = self._decode(node, obj)
        if item is None:
            return
        if isinstance(item, ResponseDone):
            route.done = True
        try:
            route.events.put_nowait(item)
        except asyncio.QueueFull:  # the session reads at once: only a flood gets here
            route.events.get_nowait()  # make room for the reason: the answer fails, the session goes on
            route.events.put_nowait(BusyError(f"answer from node {node} larger than {route.events.maxsize} events"))
            route.done = True

    def watch_event(self, route: WatchRoute, node: str, obj: dict[str, Any]) -> None:
        item = self._decode(node, obj)
        if isinstance(item, ResponseCreated):
            item = dataclasses.replace(item, watch_id=route.watch_id)
        if item is not None:
            self.publish(item)

    def watch_refused(self, route: WatchRoute, obj: dict[str, Any]) -> None:
        """The node refused one of our watches (e.g. its daemon-wide limit): the client hears it under its id."""
        if self._watches.get(route.watch_id) is route:
            del self._watches[route.watch_id]
        client_id = route.watch_id.split(":", 1)[-1]
        self.publish(RelayedEvent({**obj, "event_id": client_id}))

    def proactive_event(self, node: str, event_type: str, item: ResponseEvent) -> None:
        out = self._response_ids.outgoing(node, event_type, item.response_id)
        self.publish(item if out == item.response_id else dataclasses.replace(item, response_id=out))

    def forget_node(self, node: str) -> None:
        self._response_ids.forget_node(node)

    def _decode(self, node: str, obj: dict[str, Any]) -> ResponseEvent | None:
        item = ev.decode_response(obj)
        if item is None:
            return None
        out = self._response_ids.outgoing(node, str(obj.get("type")), item.response_id)
        return item if out == item.response_id else dataclasses.replace(item, response_id=out)

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
