"""One WebSocket client: the I/O adapter around the session core (protocols/contract/session.py) — socket, send queue,
tasks.

Tasks per client (one TaskGroup, all named, all cancelled when the connection ends):
  reader   the handler's own coroutine: raw message → core → actions; errors become `error` events
  writer   send queue → socket
  events   service subscription → core (routing/filtering) → send queue
  query:*  one per running query (at most `limits.max_concurrent_queries`): service.query → core → send queue

Overflow policy `disconnect_client`: every outgoing event is put on the client's bounded send queue without
waiting; when it is full (or the service subscription overflowed) the client is too slow: it is closed with
code 4000 and counted. Nothing upstream ever waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livesight.errors import contain
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import ServiceAPI, ServiceError, Subscription
from livesight.protocols.contract.session import (
    Action,
    ClientLimits,
    Send,
    SessionCore,
    SessionHooks,
    StartQuery,
    StopQuery,
)
from livesight.protocols.web.ws_endpoint import CLOSE_TOO_SLOW, WSConn, close_too_slow

if TYPE_CHECKING:
    from livesight.protocols.web.metrics import ServerMetrics

__all__ = ["CLOSE_TOO_SLOW", "ClientLimits", "ClientSession", "SessionCounters"]


log = logging.getLogger(__name__)


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
        conn: WSConn,
        session_id: str,
        queue_size: int,
        limits: ClientLimits,
        metrics: ServerMetrics,
        max_message_bytes: int,
        hooks: SessionHooks | None = None,
    ) -> None:
        self.service = service
        self.conn = conn
        self.session_id = session_id
        self.limits = limits
        self.metrics = metrics
        self.queue_size = queue_size
        self.send_queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.core = SessionCore(
            service,
            session_id=session_id,
            limits=limits,
            max_message_bytes=max_message_bytes,
            send_queue=queue_size,
            metrics=metrics,
            hooks=hooks,
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}  # query id → task reading service.query
        self._tg: asyncio.TaskGroup | None = None
        self._closing = False
        self.counters = SessionCounters()

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        sub = self.service.subscribe(maxsize=self.queue_size)
        try:
            self._apply(self.core.hello())
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                writer = tg.create_task(self._writer(), name=f"ws:{self.session_id}:writer")
                pump = tg.create_task(self._pump(sub), name=f"ws:{self.session_id}:events")
                await self._reader()
                self._closing = True
                writer.cancel()
                pump.cancel()
                for task in list(self._tasks.values()):
                    task.cancel()
        finally:
            self._closing = True
            sub.close()
            self.core.close()

    @property
    def dropped_slow(self) -> bool:
        return self.counters.dropped_slow

    async def _reader(self) -> None:
        async for raw in self.conn.messages():
            self.counters.received += 1
            self._apply(self.core.receive(raw))

    async def _writer(self) -> None:
        while True:
            msg = await self.send_queue.get()
            if not await self.conn.send(msg):
                return
            self.counters.sent += 1

    async def _pump(self, sub: Subscription) -> None:
        async for item in sub:
            self._apply(self.core.broadcast(item))
        if sub.overflowed:
            self._too_slow("event subscription overflowed")

    # ---- carrying out the core's actions -------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(a.event, a.raw)
            elif isinstance(a, StartQuery):
                assert self._tg is not None
                self._tasks[a.query_id] = self._tg.create_task(
                    self._run_query(a), name=f"ws:{self.session_id}:query:{a.query_id}"
                )
            elif isinstance(a, StopQuery):
                task = self._tasks.get(a.query_id)
                if task is not None:
                    task.cancel()
        self.counters.errors = self.core.errors

    def _send(self, event: dict, raw: str | None = None) -> None:
        """Queue an event without waiting; a full queue means the client is too slow (it gets dropped). `raw`: its
        JSON text, when already encoded (an event the gateway fans out to many clients is encoded once)."""
        if self._closing:
            return
        try:
            self.send_queue.put_nowait(raw if raw is not None else ev.dumps(event))
        except asyncio.QueueFull:
            self._too_slow(f"send queue full ({self.queue_size} events)")

    async def _run_query(self, q: StartQuery) -> None:
        core, qid = self.core, q.query_id
        agen = self.service.query(camera=q.camera, text=q.text, query_id=qid)
        cancelled = False
        try:
            async for item in agen:
                self._apply(core.query_event(qid, item))
                if (run := core.queries.get(qid)) is not None and run.done_sent:
                    break
        except asyncio.CancelledError:
            cancelled = True
            raise
        except ServiceError as e:
            self._apply(core.query_failed(qid, e))
        except Exception as e:  # a bug: this query fails (the client gets its error), never the connection
            contain("web.query", e, log, f"query {qid} of client {self.session_id}")
            self._apply(core.query_failed(qid, e))
        finally:
            self._tasks.pop(qid, None)
            self._apply(core.query_closed(qid, cancelled=cancelled))
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # "aclose(): asynchronous generator is already running"
                    await aclose()

    # ---- slow clients --------------------------------------------------------------------------------------

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
        await close_too_slow(self.conn, self.session_id)
