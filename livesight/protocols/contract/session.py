"""The session core of every protocol face: pure state, no I/O, no tasks, no clock of its own.

Adapters (WebSocket: protocols/web/ws_session.py; MQTT: protocols/mqtt/bridge.py) own the sockets and tasks; they
feed this core what happens and carry out what it returns:

    core = SessionCore(service, session_id="s1", limits=ClientLimits(), max_message_bytes=65536)
    actions = core.receive(raw)                 # a client message (rate limit, decode, dispatch)
    actions = core.query_event(query_id, item)  # an event the service yielded for a running query
    actions = core.query_failed(query_id, exc)  # the service refused (ServiceError) or broke
    actions = core.query_closed(query_id, cancelled=False)  # the adapter stopped reading the query
    actions = core.broadcast(item)              # an event of the service subscription

Actions: `Send(event)` (a JSON-able dict for the client), `StartQuery(query_id, camera, text)` (run
`service.query` and feed its events back), `StopQuery(query_id)` (stop reading it). Service errors are typed
(`livesight.protocols.contract.api.ServiceError`) and carry their protocol code; `service_error` turns one into the
`ProtocolError` sent. `QueryRun` is one query's lifecycle (created → deltas → exactly one done), shared by both faces.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from livesight.errors import contain
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import BroadcastEvent, RelayedEvent, ServiceAPI, ServiceError
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, ResponseStatus

log = logging.getLogger(__name__)


class SessionMetrics(Protocol):
    """The instruments a session counts in (prometheus_client's, in protocols/web/metrics.py; the core never imports
    them)."""

    errors: Any  # .labels(code).inc(): error events sent
    messages: Any  # .labels(type).inc(): client messages received
    queries: Any  # .labels(status).inc(): queries answered, by final status
    ttft: Any  # .observe(seconds): time to first token of answered queries


MAX_ROUTES = 64  # broadcast responses followed at once per client (proactive/watch answers in flight)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Per-client limits (documented in docs/protocol.md)."""

    max_concurrent_queries: int = 4  # more → error `busy`
    rate_per_s: float = 20.0  # client messages per second, sustained …
    burst: int = 40  # … with this burst; beyond → error `rate_limited` (message ignored)
    max_watches: int = 4  # per session (server.watches_per_client); more → error `limit_exceeded`
    close_timeout_s: float = 2.0  # closing handshake with a slow client, then the TCP connection is aborted
    keepalive_s: float = 20.0  # a ping this often; no pong within as long → dropped (a client that stopped reading)


class TokenBucket:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self.last = clock()

    def take(self) -> bool:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# ---- actions ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    event: dict[str, Any]
    raw: str | None = None  # the event's JSON text when it is already encoded (a RelayedEvent's)


@dataclass(frozen=True, slots=True)
class StartQuery:
    query_id: str
    camera: str
    text: str


@dataclass(frozen=True, slots=True)
class StopQuery:
    query_id: str


Action = Send | StartQuery | StopQuery


def why(e: BaseException) -> str:
    if isinstance(e, ServiceError):
        return e.message
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def service_error(e: BaseException, *, event_id: str | None, event_type: str | None) -> ev.ProtocolError:
    """The protocol error for an exception of the service: its own code when typed, `internal_error` otherwise."""
    code = e.code if isinstance(e, ServiceError) else ev.ErrorCode.INTERNAL
    return ev.ProtocolError(code, why(e), event_id=event_id, event_type=event_type)


class QueryRun:
    """One query's lifecycle: what the service yields → the events to send, created first and exactly one done.

    Events before `created` or after `done` are dropped. `event_type` goes into errors sent before the answer
    began (the WebSocket face names the offending event type; MQTT leaves it null).
    """

    def __init__(self, query_id: str, *, event_type: str | None = "query") -> None:
        self.query_id = query_id
        self.event_type = event_type
        self.response_id: str | None = None
        self.created_sent = False
        self.done: ResponseDone | None = None

    @property
    def done_sent(self) -> bool:
        return self.done is not None

    def receive(self, item: Any) -> list[dict[str, Any]]:
        if isinstance(item, ResponseCreated):
            self.response_id = item.response_id
            self.created_sent = True
            return [ev.encode_response(item, query_id=self.query_id)]
        if not self.created_sent or self.done is not None:
            return []
        if isinstance(item, ResponseDone):
            self.done = item
        return [ev.encode_response(item, query_id=self.query_id, kind=ResponseKind.QUERY.value)]

    def fail(self, e: BaseException) -> list[dict[str, Any]]:
        """The service raised: an `error` event before the answer began, else the answer ends as failed."""
        if self.created_sent:
            return self.receive(ResponseDone(self.response_id or "", ResponseStatus.FAILED, "", error=why(e)))
        return [ev.encode_error(service_error(e, event_id=self.query_id, event_type=self.event_type))]

    def close(self, *, cancelled: bool) -> list[dict[str, Any]]:
        """Reading stopped: a begun answer without its done gets one (cancelled, or failed: "ended")."""
        if not self.created_sent or self.done is not None:
            return []
        if cancelled:
            return self.receive(ResponseDone(self.response_id or "", ResponseStatus.CANCELLED, ""))
        return self.receive(ResponseDone(self.response_id or "", ResponseStatus.FAILED, "", error="ended"))


@dataclass(frozen=True, slots=True)
class _Route:
    kind: str
    watch_id: str | None  # the client's own watch id


@dataclass(frozen=True, slots=True)
class SessionHooks:
    """What a face may add to the core (the gateway does): the cameras `session.created` lists (default: the service's
    cameras with their health), and a callback when the client turns proactive answers on or off."""

    camera_views: Callable[[], list[dict[str, Any]]] | None = None
    on_proactive: Callable[[bool], None] | None = None


_TYPE_NAMES: dict[type, str] = {
    ev.SessionUpdate: "session.update",
    ev.Query: "query",
    ev.QueryCancel: "query.cancel",
    ev.WatchAdd: "watch.add",
    ev.WatchRemove: "watch.remove",
}


class SessionCore:
    """One client's session: defaults (camera, proactive), running queries, watches, broadcast routing, rate limit."""

    def __init__(
        self,
        service: ServiceAPI,
        *,
        session_id: str,
        limits: ClientLimits,
        max_message_bytes: int,
        send_queue: int,
        metrics: SessionMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        hooks: SessionHooks | None = None,
    ) -> None:
        self.service = service
        self.session_id = session_id
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.send_queue = send_queue
        self.metrics = metrics
        self.hooks = hooks or SessionHooks()
        cams = service.camera_ids()
        self.camera: str = cams[0] if cams else ""
        self.proactive = True
        self.queries: dict[str, QueryRun] = {}
        self.watches: dict[str, str] = {}  # client watch id → service watch id
        self._watch_owner: dict[str, str] = {}  # service watch id → client watch id
        self._routes: OrderedDict[str, _Route] = OrderedDict()
        self._bucket = TokenBucket(limits.rate_per_s, limits.burst, clock=clock)
        self.errors = 0  # error events sent

    # ---- session ---------------------------------------------------------------------------------------------

    def hello(self) -> list[Action]:
        """The first events of a session: `session.created`, then a stats snapshot."""
        return [Send(self._session_created()), Send(ev.encode_stats(self.service.stats()))]

    def close(self) -> None:
        """The session ended: its watches go with it."""
        for service_id in list(self._watch_owner):
            self.service.remove_watch(service_id)
        self._watch_owner.clear()
        self.watches.clear()

    def _session_created(self) -> dict[str, Any]:
        if self.hooks.camera_views is not None:
            cameras = self.hooks.camera_views()
        else:
            health = self.service.health().get("cameras", {})
            cameras = [
                {"id": c, "state": health.get(c, {}).get("state"), "reason": health.get(c, {}).get("reason")}
                for c in self.service.camera_ids()
            ]
        limits = {
            "max_message_bytes": self.max_message_bytes,
            "max_text_chars": ev.MAX_TEXT_CHARS,
            "max_concurrent_queries": self.limits.max_concurrent_queries,
            "max_watches": self.limits.max_watches,
            "rate_per_s": self.limits.rate_per_s,
            "burst": self.limits.burst,
            "send_queue": self.send_queue,
        }
        return ev.encode_session_created(
            session_id=self.session_id, cameras=cameras, camera=self.camera, proactive=self.proactive, limits=limits
        )

    def _error(self, err: ev.ProtocolError) -> Send:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.errors.labels(err.code).inc()
        return Send(ev.encode_error(err))

    def _count(self, label: str) -> None:
        if self.metrics is not None:
            self.metrics.messages.labels(label).inc()

    # ---- incoming --------------------------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[Action]:
        if not self._bucket.take():
            self._count("rate_limited")
            return [
                self._error(
                    ev.ProtocolError(
                        ev.ErrorCode.RATE_LIMITED,
                        f"too many messages: at most {self.limits.rate_per_s:g}/s (burst {self.limits.burst}); "
                        "this one was ignored",
                    )
                )
            ]
        try:
            msg = ev.decode_client(raw)
        except ev.ProtocolError as e:
            self._count("invalid")
            return [self._error(e)]
        typ = _TYPE_NAMES[type(msg)]
        self._count(typ)
        try:
            if isinstance(msg, ev.SessionUpdate):
                return self._session_update(msg)
            if isinstance(msg, ev.Query):
                return self._start_query(msg)
            if isinstance(msg, ev.QueryCancel):
                return self._cancel(msg)
            if isinstance(msg, ev.WatchAdd):
                return self._watch_add(msg)
            return self._watch_remove(msg)
        except ev.ProtocolError as e:
            if e.event_type is None:
                e.event_type = typ
            if e.event_id is None:
                e.event_id = getattr(msg, "id", None) or msg.event_id
            return [self._error(e)]
        except Exception as e:  # a bug must not take the connection down: report it and go on
            contain("session.message", e, log, f"client {self.session_id}: handling {typ}")
            event_id = getattr(msg, "id", None) or msg.event_id
            return [
                self._error(ev.ProtocolError(ev.ErrorCode.INTERNAL, f"internal error: {why(e)}", event_id=event_id))
            ]

    def _check_camera(self, camera: str | None) -> str:
        if camera is None:
            return self.camera
        if camera not in self.service.camera_ids():
            raise ev.ProtocolError(
                ev.ErrorCode.UNKNOWN_CAMERA,
                f"unknown camera {camera!r} (cameras: {', '.join(self.service.camera_ids())})",
            )
        return camera

    def _session_update(self, msg: ev.SessionUpdate) -> list[Action]:
        if msg.camera_set:
            cams = self.service.camera_ids()
            self.camera = self._check_camera(msg.camera) if msg.camera is not None else (cams[0] if cams else "")
        if msg.proactive is not None:
            self.proactive = msg.proactive
            if self.hooks.on_proactive is not None:
                self.hooks.on_proactive(msg.proactive)
        return [
            Send(ev.encode_session_updated(session_id=self.session_id, camera=self.camera, proactive=self.proactive))
        ]

    def _start_query(self, msg: ev.Query) -> list[Action]:
        if msg.id in self.queries:
            raise ev.ProtocolError(ev.ErrorCode.DUPLICATE_ID, f"query {msg.id!r} is still running")
        if len(self.queries) >= self.limits.max_concurrent_queries:
            raise ev.ProtocolError(
                ev.ErrorCode.BUSY,
                f"{len(self.queries)} queries already running in this session "
                f"(at most {self.limits.max_concurrent_queries}); wait for one to finish",
            )
        camera = self._check_camera(msg.camera)
        self.queries[msg.id] = QueryRun(msg.id)
        return [StartQuery(msg.id, camera, msg.text)]

    def _cancel(self, msg: ev.QueryCancel) -> list[Action]:
        run = self.queries.get(msg.id) or next((q for q in self.queries.values() if q.response_id == msg.id), None)
        if run is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no running query {msg.id!r} in this session")
        if run.response_id is not None and self.service.cancel(run.response_id):
            return []  # the service finishes the response with status cancelled
        return [StopQuery(run.query_id)]  # not known to the service (yet/any more): stop reading it

    def _watch_add(self, msg: ev.WatchAdd) -> list[Action]:
        if msg.id not in self.watches and len(self.watches) >= self.limits.max_watches:
            raise ev.ProtocolError(ev.ErrorCode.LIMIT, f"at most {self.limits.max_watches} watches per session")
        camera = self._check_camera(msg.camera)
        service_id = self.watches.get(msg.id) or f"{self.session_id}:{msg.id}"
        try:
            self.service.add_watch(camera=camera, text=msg.text, watch_id=service_id)
        except ServiceError as e:
            raise service_error(e, event_id=None, event_type=None) from None
        self.watches[msg.id] = service_id
        self._watch_owner[service_id] = msg.id
        return [Send(ev.encode_watch_added(watch_id=msg.id, camera=camera, text=msg.text))]

    def _watch_remove(self, msg: ev.WatchRemove) -> list[Action]:
        service_id = self.watches.pop(msg.id, None)
        if service_id is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no watch {msg.id!r} in this session")
        self._watch_owner.pop(service_id, None)
        self.service.remove_watch(service_id)
        return [Send(ev.encode_watch_removed(watch_id=msg.id))]

    # ---- running queries -------------------------------------------------------------------------------------

    def query_event(self, query_id: str, item: Any) -> list[Action]:
        run = self.queries.get(query_id)
        if run is None:
            return []
        out = run.receive(item)
        if out and isinstance(item, ResponseDone) and run.done is item:
            self._count_done(item)
        return [Send(e) for e in out]

    def query_failed(self, query_id: str, e: BaseException) -> list[Action]:
        run = self.queries.get(query_id)
        if run is None:
            return []
        out = run.fail(e)
        if run.done is not None and out:
            self._count_done(run.done)
        elif not run.created_sent:
            self.errors += 1
            if self.metrics is not None:
                self.metrics.errors.labels(out[0]["code"]).inc()
        return [Send(x) for x in out]

    def query_closed(self, query_id: str, *, cancelled: bool) -> list[Action]:
        run = self.queries.pop(query_id, None)
        if run is None:
            return []
        out = run.close(cancelled=cancelled)
        if out and run.done is not None:
            self._count_done(run.done)
        return [Send(e) for e in out]

    def _count_done(self, done: ResponseDone) -> None:
        if self.metrics is None:
            return
        self.metrics.queries.labels(done.status.value).inc()
        if done.status is ResponseStatus.COMPLETED and done.ttft_ms is not None:
            self.metrics.ttft.observe(done.ttft_ms / 1000.0)

    # ---- broadcast routing -----------------------------------------------------------------------------------

    def broadcast(self, item: BroadcastEvent) -> list[Action]:
        """Route a subscription event to this client, or nothing when it is not for this client.

        Proactive answers go to sessions with proactive on; watch answers only to the session that owns the watch
        (with its own watch id); query answers only ever go to the asking session (not through the subscription).
        A response whose `created` this client did not see (joined mid-answer) is skipped whole. A `RelayedEvent`
        (already encoded further away) goes to the client as it is.
        """
        if isinstance(item, RelayedEvent):
            return [Send(item.event, item.raw)]
        if isinstance(item, ResponseCreated):
            if item.kind is ResponseKind.PROACTIVE and self.proactive:
                route = _Route(item.kind.value, None)
            elif item.kind is ResponseKind.WATCH and item.watch_id in self._watch_owner:
                route = _Route(item.kind.value, self._watch_owner[item.watch_id])
            else:
                return []
            self._routes[item.response_id] = route
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
            return [Send(ev.encode_response(item, watch_id=route.watch_id))]
        if isinstance(item, ResponseDelta | ResponseDone):
            route = self._routes.get(item.response_id)
            if route is None:
                return []
            if isinstance(item, ResponseDone):
                del self._routes[item.response_id]
            return [Send(ev.encode_response(item, kind=route.kind, watch_id=route.watch_id))]
        return [Send(ev.encode_broadcast(item))]
