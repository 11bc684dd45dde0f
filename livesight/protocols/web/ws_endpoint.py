"""The WebSocket endpoint of the port (the daemon's and the gateway's): accept, one session per connection, count,
and close every client with 1001 when the server stops.

    endpoint = WSEndpoint(make_session=lambda conn, sid: ClientSession(...), metrics=..., id_prefix="sess_")
    routes = [WebSocketRoute("/", endpoint), WebSocketRoute("/ws", endpoint)]      # an ASGI app
    ...
    await endpoint.close_all()        # 1001 to every client, then waits for their handlers (named ws:<session>)

A session is anything with `async run()` and `dropped_slow`; it talks to its client through a `WSConn`: messages in,
text out, a close that never waits for a client that stopped reading (the transport aborts it after close_timeout_s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from livesight.ids import new_id
from livesight.protocols.web.metrics import ServerMetrics
from livesight.protocols.web.transport import KEEPALIVE_REASON

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001  # the server stops
CLOSE_TOO_SLOW = 4000  # the client did not read its events fast enough
CLOSE_WAIT_S = 5.0  # at stop: how long the handlers get to end after their 1001


class WSConn:
    """One accepted WebSocket as a session uses it."""

    def __init__(self, ws: WebSocket, receive: Receive) -> None:
        self.ws = ws
        self._receive = receive  # the raw ASGI channel: it reports the end of the connection after our own close
        self.close_code: int | None = None  # as the connection ended (the peer's, ours, or 1011 for keep-alive)
        self.close_reason = ""
        self.closed_by_us = False

    @property
    def peer(self) -> str:
        c = self.ws.client
        return f"{c.host}:{c.port}" if c is not None else "?"

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Client messages until the connection ends."""
        while True:
            try:
                msg = await self.ws.receive()
            except RuntimeError:  # already disconnected
                return
            if msg["type"] == "websocket.disconnect":
                self.close_code = msg.get("code", 1005)
                self.close_reason = msg.get("reason") or ""
                return
            text = msg.get("text")
            yield text if text is not None else msg.get("bytes") or b""

    async def send(self, text: str) -> bool:
        """Send one message (waits while the client's socket buffer is full). False once the connection is gone."""
        try:
            await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return False
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (never waits for the client)."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.closed_by_us = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.close(code, reason)

    async def wait_closed(self, timeout_s: float) -> None:
        """After our close: wait until the connection is gone (the peer answered, or the transport aborted it after
        its close timeout), `timeout_s` at most. The session stays listed meanwhile, as its socket is still open."""
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(timeout_s):
                while (await self._receive())["type"] != "websocket.disconnect":
                    pass

    @property
    def keepalive_timed_out(self) -> bool:
        """Did the server drop this connection because its pings went unanswered (a client that stopped reading, or
        a dead peer)?"""
        return self.close_code == 1011 and self.close_reason == KEEPALIVE_REASON


async def close_too_slow(conn: WSConn, session_id: str) -> None:
    """Close a client that cannot keep up (code CLOSE_TOO_SLOW); the transport aborts it if it does not answer."""
    log.info("client %s: closing (too slow)", session_id)
    await conn.close(CLOSE_TOO_SLOW, "client too slow")


class Session(Protocol):
    dropped_slow: bool

    async def run(self) -> None: ...


class WSEndpoint:
    def __init__(
        self,
        *,
        make_session: Callable[[WSConn, str], Session],
        metrics: ServerMetrics,
        id_prefix: str,
        close_timeout_s: float,
        label: str = "client",
    ) -> None:
        self.make_session = make_session
        self.close_timeout_s = close_timeout_s
        self.metrics = metrics
        self.id_prefix = id_prefix
        self.label = label
        self.sessions: dict[str, Session] = {}
        self.clients_dropped_slow = 0  # clients disconnected because they did not read fast enough
        self._conns: dict[str, WSConn] = {}
        self._handlers: set[asyncio.Task[object]] = set()
        self._closing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        conn = WSConn(websocket, receive)
        if self._closing:
            await conn.close(CLOSE_GOING_AWAY, "server stopping")
            return
        session_id = new_id(self.id_prefix)  # unique across the fleet (docs/protocol.md, "Ids")
        task = asyncio.current_task()
        if task is not None:
            task.set_name(f"ws:{session_id}")
            self._handlers.add(task)
        session = self.make_session(conn, session_id)
        self.sessions[session_id] = session
        self._conns[session_id] = conn
        self.metrics.clients.inc()
        log.info("%s %s connected from %s", self.label, session_id, conn.peer)
        try:
            await session.run()
        finally:
            if conn.closed_by_us:
                await conn.wait_closed(self.close_timeout_s + 0.5)
            self.metrics.clients.dec()
            del self.sessions[session_id]
            del self._conns[session_id]
            if session.dropped_slow:
                self.clients_dropped_slow += 1
            elif conn.keepalive_timed_out:
                self.metrics.clients_dropped.labels("keepalive").inc()
            log.info(
                "%s %s disconnected (code %s%s)",
                self.label,
                session_id,
                conn.close_code,
                ", too slow" if session.dropped_slow else "",
            )
            if task is not None:
                self._handlers.discard(task)
            await conn.close(1000)  # a session that ended on its own closes its connection normally

    async def close_all(self) -> None:
        """Close every client with 1001 (going away) and wait (CLOSE_WAIT_S at most) for their handlers."""
        self._closing = True
        await asyncio.gather(*(c.close(CLOSE_GOING_AWAY) for c in list(self._conns.values())))
        handlers = set(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=CLOSE_WAIT_S)
            if late:
                log.warning("%d WebSocket handler(s) still running after %.0f s", len(late), CLOSE_WAIT_S)
