"""One WebSocket client: its session state, bounded send queue, running queries and watches.

Tasks per client (one TaskGroup, all named, all cancelled when the connection ends):
  reader   the handler's own coroutine: decode → dispatch; errors become `error` events
  writer   send queue → socket
  events   service subscription → routing/filtering → send queue
  query:*  one per running query (at most `limits.max_concurrent_queries`)

Overflow policy `disconnect_client`: every outgoing event is put on the client's bounded send queue without
waiting; when it is full (or the service subscription overflowed) the client is too slow: it is closed with
code 4000 and counted. Nothing upstream ever waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from livesight.protocols import events as ev
from livesight.protocols.api import BroadcastEvent, ServiceAPI, Subscription
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, ResponseStatus

if TYPE_CHECKING:
    from livesight.protocols.metrics import ServerMetrics

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4000  # the client did not read its events fast enough
MAX_ROUTES = 64  # broadcast responses followed at once per client (proactive/watch answers in flight)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Per-client limits (documented in docs/protocol.md)."""

    max_concurrent_queries: int = 4  # more → error `busy`
    rate_per_s: float = 20.0  # client messages per second, sustained …
    burst: int = 40  # … with this burst; beyond → error `rate_limited` (message ignored)
    max_watches: int = 16  # per session; more → error `limit_exceeded`
    close_timeout_s: float = 2.0  # closing handshake with a slow client, then the TCP connection is aborted


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(eq=False)
class _RunningQuery:
    query_id: str
    task: asyncio.Task[None] | None = None
    response_id: str | None = None
    created_sent: bool = False
    done_sent: bool = False


@dataclass(frozen=True, slots=True)
class _Route:
    kind: str
    watch_id: str | None  # the client's own watch id


@dataclass
class SessionCounters:
    sent: int = 0
    received: int = 0
    errors: int = 0
    dropped_slow: bool = False


class ClientSession:
    def __init__(
        self,
        *,
        service: ServiceAPI,
        conn: ServerConnection,
        session_id: str,
        queue_size: int,
        limits: ClientLimits,
        metrics: ServerMetrics,
        max_message_bytes: int,
    ) -> None:
        self.service = service
        self.conn = conn
        self.session_id = session_id
        self.limits = limits
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.queue_size = queue_size
        self.send_queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        cams = service.camera_ids()
        self.camera: str = cams[0] if cams else ""
        self.proactive = True
        self.queries: dict[str, _RunningQuery] = {}
        self.watches: dict[str, str] = {}  # client watch id → service watch id
        self._watch_owner: dict[str, str] = {}  # service watch id → client watch id
        self._routes: OrderedDict[str, _Route] = OrderedDict()
        self._bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self._tg: asyncio.TaskGroup | None = None
        self._closing = False
        self.counters = SessionCounters()

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        sub = self.service.subscribe(maxsize=self.queue_size)
        try:
            self._send(self._session_created())
            self._send(ev.encode_stats(self.service.stats()))
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                writer = tg.create_task(self._writer(), name=f"ws:{self.session_id}:writer")
                pump = tg.create_task(self._pump(sub), name=f"ws:{self.session_id}:events")
                await self._reader()
                self._closing = True
                writer.cancel()
                pump.cancel()
                for q in list(self.queries.values()):
                    if q.task is not None:
                        q.task.cancel()
        finally:
            self._closing = True
            sub.close()
            for service_id in list(self._watch_owner):
                self.service.remove_watch(service_id)

    async def _reader(self) -> None:
        try:
            async for raw in self.conn:
                self.counters.received += 1
                self._dispatch(raw)
        except ConnectionClosed:
            return

    async def _writer(self) -> None:
        try:
            while True:
                msg = await self.send_queue.get()
                await self.conn.send(msg)
                self.counters.sent += 1
        except ConnectionClosed:
            return

    async def _pump(self, sub: Subscription) -> None:
        async for item in sub:
            out = self._route_broadcast(item)
            if out is not None:
                self._send(out)
        if sub.overflowed:
            self._too_slow("event subscription overflowed")

    # ---- outgoing ------------------------------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> None:
        """Queue an event without waiting; a full queue means the client is too slow (it gets dropped)."""
        if self._closing:
            return
        try:
            self.send_queue.put_nowait(ev.dumps(event))
        except asyncio.QueueFull:
            self._too_slow(f"send queue full ({self.queue_size} events)")

    def _error(self, err: ev.ProtocolError) -> None:
        self.counters.errors += 1
        self.metrics.errors.labels(err.code).inc()
        self._send(ev.encode_error(err))

    def _too_slow(self, why: str) -> None:
        if self._closing:
            return
        self._closing = True
        self.counters.dropped_slow = True
        reason = "subscription" if "subscription" in why else "send_queue"
        self.metrics.clients_dropped.labels(reason).inc()
        log.warning("client %s is too slow (%s): disconnecting it", self.session_id, why)
        assert self._tg is not None
        self._tg.create_task(self._drop(), name=f"ws:{self.session_id}:drop")

    async def _drop(self) -> None:
        try:
            async with asyncio.timeout(self.limits.close_timeout_s + 0.5):
                await self.conn.close(CLOSE_TOO_SLOW, "client too slow")
        except TimeoutError:
            log.info("client %s did not complete the closing handshake: aborting", self.session_id)
            if self.conn.transport is not None:
                self.conn.transport.abort()

    def _session_created(self) -> dict[str, Any]:
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
            "send_queue": self.queue_size,
        }
        return ev.encode_session_created(
            session_id=self.session_id, cameras=cameras, camera=self.camera, proactive=self.proactive, limits=limits
        )

    # ---- broadcast routing ---------------------------------------------------------------------------------

    def _route_broadcast(self, item: BroadcastEvent) -> dict[str, Any] | None:
        """Encode a subscription event for this client, or None when it is not for this client.

        Proactive answers go to sessions with proactive on; watch answers only to the session that owns the watch
        (with its own watch id); query answers only ever go to the asking session (not through the subscription).
        A response whose `created` this client did not see (joined mid-answer) is skipped whole.
        """
        if isinstance(item, ResponseCreated):
            if item.kind is ResponseKind.PROACTIVE and self.proactive:
                route = _Route(item.kind.value, None)
            elif item.kind is ResponseKind.WATCH and item.watch_id in self._watch_owner:
                route = _Route(item.kind.value, self._watch_owner[item.watch_id])
            else:
                return None
            self._routes[item.response_id] = route
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
            return ev.encode_response(item, watch_id=route.watch_id)
        if isinstance(item, ResponseDelta | ResponseDone):
            route = self._routes.get(item.response_id)
            if route is None:
                return None
            if isinstance(item, ResponseDone):
                del self._routes[item.response_id]
            return ev.encode_response(item, kind=route.kind, watch_id=route.watch_id)
        return ev.encode_broadcast(item)

    # ---- incoming ------------------------------------------------------------------------------------------

    def _dispatch(self, raw: str | bytes) -> None:
        if not self._bucket.take():
            self.metrics.messages.labels("rate_limited").inc()
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
            self.metrics.messages.labels("invalid").inc()
            self._error(e)
            return
        typ = _TYPE_NAMES[type(msg)]
        self.metrics.messages.labels(typ).inc()
        try:
            if isinstance(msg, ev.SessionUpdate):
                self._session_update(msg)
            elif isinstance(msg, ev.Query):
                self._start_query(msg)
            elif isinstance(msg, ev.QueryCancel):
                self._cancel(msg)
            elif isinstance(msg, ev.WatchAdd):
                self._watch_add(msg)
            else:
                self._watch_remove(msg)
        except ev.ProtocolError as e:
            if e.event_type is None:
                e.event_type = typ
            if e.event_id is None:
                e.event_id = getattr(msg, "id", None) or msg.event_id
            self._error(e)
        except Exception as e:  # a bug must not take the connection down: report it and go on
            log.exception("client %s: handling %s failed", self.session_id, typ)
            event_id = getattr(msg, "id", None) or msg.event_id
            self._error(ev.ProtocolError(ev.ErrorCode.INTERNAL, f"internal error: {_why(e)}", event_id=event_id))

    def _check_camera(self, camera: str | None) -> str:
        if camera is None:
            return self.camera
        if camera not in self.service.camera_ids():
            raise ev.ProtocolError(
                ev.ErrorCode.UNKNOWN_CAMERA,
                f"unknown camera {camera!r} (cameras: {', '.join(self.service.camera_ids())})",
            )
        return camera

    def _session_update(self, msg: ev.SessionUpdate) -> None:
        if msg.camera_set:
            cams = self.service.camera_ids()
            self.camera = self._check_camera(msg.camera) if msg.camera is not None else (cams[0] if cams else "")
        if msg.proactive is not None:
            self.proactive = msg.proactive
        self._send(ev.encode_session_updated(session_id=self.session_id, camera=self.camera, proactive=self.proactive))

    def _start_query(self, msg: ev.Query) -> None:
        if msg.id in self.queries:
            raise ev.ProtocolError(ev.ErrorCode.DUPLICATE_ID, f"query {msg.id!r} is still running")
        if len(self.queries) >= self.limits.max_concurrent_queries:
            raise ev.ProtocolError(
                ev.ErrorCode.BUSY,
                f"{len(self.queries)} queries already running in this session "
                f"(at most {self.limits.max_concurrent_queries}); wait for one to finish",
            )
        camera = self._check_camera(msg.camera)
        rq = _RunningQuery(msg.id)
        self.queries[msg.id] = rq
        assert self._tg is not None
        rq.task = self._tg.create_task(self._run_query(rq, msg, camera), name=f"ws:{self.session_id}:query:{msg.id}")

    async def _run_query(self, rq: _RunningQuery, msg: ev.Query, camera: str) -> None:
        agen = self.service.query(camera=camera, text=msg.text, query_id=msg.id)
        try:
            async for item in agen:
                self._query_event(rq, item)
                if isinstance(item, ResponseDone):
                    break
            if rq.created_sent and not rq.done_sent:  # the service ended without done: say so
                self._query_event(rq, ResponseDone(rq.response_id or "", ResponseStatus.FAILED, "", error="ended"))
        except asyncio.CancelledError:
            if rq.created_sent and not rq.done_sent:
                self._query_event(rq, ResponseDone(rq.response_id or "", ResponseStatus.CANCELLED, ""))
            raise
        except (KeyError, OverflowError, ValueError) as e:
            self._query_failed(rq, msg, e)
        except Exception as e:
            log.exception("query %s of client %s failed", msg.id, self.session_id)
            self._query_failed(rq, msg, e)
        finally:
            self.queries.pop(msg.id, None)
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # "aclose(): asynchronous generator is already running"
                    await aclose()

    def _query_failed(self, rq: _RunningQuery, msg: ev.Query, e: BaseException) -> None:
        if rq.created_sent:  # the answer had begun: finish it as failed
            self._query_event(rq, ResponseDone(rq.response_id or "", ResponseStatus.FAILED, "", error=_why(e)))
            return
        code = {
            KeyError: ev.ErrorCode.UNKNOWN_CAMERA,
            OverflowError: ev.ErrorCode.BUSY,
            ValueError: ev.ErrorCode.INVALID_FIELD,
        }.get(type(e), ev.ErrorCode.INTERNAL)
        self._error(ev.ProtocolError(code, _why(e), event_id=msg.id, event_type="query"))

    def _query_event(self, rq: _RunningQuery, item: Any) -> None:
        if isinstance(item, ResponseCreated):
            rq.response_id = item.response_id
            rq.created_sent = True
            self._send(ev.encode_response(item, query_id=rq.query_id))
            return
        if not rq.created_sent or rq.done_sent:
            return
        if isinstance(item, ResponseDone):
            rq.done_sent = True
            self.metrics.queries.labels(item.status.value).inc()
            if item.status is ResponseStatus.COMPLETED and item.ttft_ms is not None:
                self.metrics.ttft.observe(item.ttft_ms / 1000.0)
        self._send(ev.encode_response(item, query_id=rq.query_id, kind=ResponseKind.QUERY.value))

    def _cancel(self, msg: ev.QueryCancel) -> None:
        rq = self.queries.get(msg.id) or next((q for q in self.queries.values() if q.response_id == msg.id), None)
        if rq is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no running query {msg.id!r} in this session")
        if rq.response_id is not None and self.service.cancel(rq.response_id):
            return  # the service finishes the response with status cancelled
        if rq.task is not None:
            rq.task.cancel()  # not known to the service (yet/any more): stop reading it here

    def _watch_add(self, msg: ev.WatchAdd) -> None:
        if msg.id not in self.watches and len(self.watches) >= self.limits.max_watches:
            raise ev.ProtocolError(ev.ErrorCode.LIMIT, f"at most {self.limits.max_watches} watches per session")
        camera = self._check_camera(msg.camera)
        service_id = self.watches.get(msg.id) or f"{self.session_id}:{msg.id}"
        try:
            self.service.add_watch(camera=camera, text=msg.text, watch_id=service_id)
        except KeyError as e:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_CAMERA, _why(e)) from None
        except OverflowError as e:
            raise ev.ProtocolError(ev.ErrorCode.LIMIT, _why(e)) from None
        except ValueError as e:
            raise ev.ProtocolError(ev.ErrorCode.INVALID_FIELD, _why(e)) from None
        self.watches[msg.id] = service_id
        self._watch_owner[service_id] = msg.id
        self._send(ev.encode_watch_added(watch_id=msg.id, camera=camera, text=msg.text))

    def _watch_remove(self, msg: ev.WatchRemove) -> None:
        service_id = self.watches.pop(msg.id, None)
        if service_id is None:
            raise ev.ProtocolError(ev.ErrorCode.UNKNOWN_ID, f"no watch {msg.id!r} in this session")
        self._watch_owner.pop(service_id, None)
        self.service.remove_watch(service_id)
        self._send(ev.encode_watch_removed(watch_id=msg.id))


_TYPE_NAMES: dict[type, str] = {
    ev.SessionUpdate: "session.update",
    ev.Query: "query",
    ev.QueryCancel: "query.cancel",
    ev.WatchAdd: "watch.add",
    ev.WatchRemove: "watch.remove",
}


def _why(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__
