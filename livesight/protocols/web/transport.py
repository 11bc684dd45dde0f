"""uvicorn under our own event loop, for the daemon's web face and the fleet gateway: one listening port, the same
limits, one clear line when the port cannot be had.

    transport = await Transport.start(app, cfg, limits, server_header="livesight")   # ServeError on failure
    transport.port                      # the bound port (port 0 → a free one)
    await transport.stop()              # stop listening, close what is left (after the app closed its clients)

uvicorn parses HTTP (httptools when installed, else h11) and speaks WebSocket (websockets' sans-I/O protocol). Three
small additions, in protocol subclasses, keep what clients saw before:

- a request head must arrive within `head_timeout_s` and fit in MAX_HEAD bytes / MAX_HEADERS lines (else the
  connection is dropped, or answered 431): uvicorn has no such bound;
- a WebSocket close never waits for a client that stopped reading, and the connection is aborted when the closing
  handshake does not finish within `close_timeout_s` (uvicorn would wait 10 s, then `close()`, which keeps a socket
  with a full send buffer open);
- a keep-alive timeout (no pong within `keepalive_s`) reaches the app as close code 1011 "keepalive ping timeout",
  so it can be counted (uvicorn reports it as 1005, like a peer that vanished).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from livesight.config import ServerConfig
from livesight.errors import ServeError
from livesight.protocols.contract.session import ClientLimits

try:  # the C parser (declared in pyproject; h11 is uvicorn's pure-Python fallback)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpBase
except ImportError:  # pragma: no cover
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpBase  # type: ignore[assignment]

# uvicorn logs every accepted WebSocket and every shutdown step at INFO (a /metrics scrape every 15 s would flood the
# log); our sessions log connects and disconnects themselves. Set these loggers to DEBUG to see the transport chatter.
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_HEAD = 16 * 1024  # request line + headers
MAX_HEADERS = 100
KEEPALIVE_REASON = "keepalive ping timeout"
SHUTDOWN_GRACE_S = 5  # after the app closed its clients: in-flight HTTP responses get this long, then are cancelled
WHY = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "no such local address",
    errno.EACCES: "permission denied",
}


def _http_protocol(head_timeout_s: float, server_header: str) -> type[asyncio.Protocol]:
    refusal = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\nserver: " + server_header.encode("latin-1") + b"\r\ncontent-length: 24\r\n\r\n"
        b"request head too large\r\n"
    )

    class GuardedHttp(_HttpBase):  # type: ignore[misc, valid-type]
        """uvicorn's HTTP protocol with a deadline and a size bound for the request head."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._head: bytearray | None = bytearray()
            self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(head_timeout_s, self._head_late)

        def data_received(self, data: bytes) -> None:
            if self._head is not None:
                self._head += data
                end = self._head.find(b"\r\n\r\n")
                size = end if end >= 0 else len(self._head)
                if size > MAX_HEAD or self._head.count(b"\r\n", 0, size) > MAX_HEADERS:
                    self._stop_head_timer()
                    self._head = None
                    self.transport.write(refusal)
                    self.transport.close()
                    return
                if end >= 0:
                    self._stop_head_timer()
                    self._head = None
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def _head_late(self) -> None:
            self._head_timer = None
            if self._head is not None:
                self.transport.abort()  # no complete request head in time: dropped without an answer

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

    return GuardedHttp


def _ws_protocol(close_timeout_s: float) -> type[asyncio.Protocol]:
    class BoundedWebSocket(WebSocketsSansIOProtocol):
        """uvicorn's WebSocket protocol with bounded closes and a counted keep-alive timeout."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = close_timeout_s

        async def send(self, message: Any) -> None:
            closing = message.get("type") == "websocket.close"
            if closing:
                self.writable.set()  # a close frame never waits for a reader that stopped: it is queued after the rest
            await super().send(message)
            if closing and self.close_timer is not None:
                self.close_timer.cancel()  # uvicorn's timer would close() a socket whose buffer may never drain
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

        def keepalive_timeout(self) -> None:
            if not self.close_sent and not self.transport.is_closing():
                self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011, "reason": KEEPALIVE_REASON})
            super().keepalive_timeout()
            self.transport.abort()  # the peer reads nothing: its buffer would hold the socket open

    return BoundedWebSocket


def _bind(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Listening sockets for every address of `host` (as asyncio's create_server binds them)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    out: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(out) > 1:
                addr = (addr[0], out[0].getsockname()[1], *addr[2:])  # one port for every address
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as e:
        for s in out:
            s.close()
        why = WHY.get(e.errno or 0, e.strerror or str(e))
        raise ServeError(f"cannot listen on {host}:{port}: {why}") from None
    return out


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a process's main coroutine (`livesight serve`, `livesight gateway`) on uvloop when it is installed (the
    `fast` extra; LIVESIGHT_LOOP=asyncio opts out), else on asyncio's own loop."""
    factory = None
    if os.environ.get("LIVESIGHT_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class Transport:
    """A started uvicorn server on our loop (no signal handlers, no logging setup, no lifespan: the caller owns
    those). A named task refreshes the Date header once a second."""

    def __init__(self, server: uvicorn.Server, sockets: list[socket.socket], name: str) -> None:
        self.server = server
        self.sockets = sockets
        self.port = int(sockets[0].getsockname()[1])
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"{name}:http-date")

    @classmethod
    async def start(
        cls,
        app: Any,
        cfg: ServerConfig,
        limits: ClientLimits,
        *,
        server_header: str,
        head_timeout_s: float = 10.0,
    ) -> Transport:
        sockets = _bind(cfg.host, cfg.port)
        config = uvicorn.Config(
            app,
            http=_http_protocol(head_timeout_s, server_header),
            ws=_ws_protocol(limits.close_timeout_s),
            ws_max_size=cfg.max_message_bytes,
            ws_ping_interval=limits.keepalive_s,
            ws_ping_timeout=limits.keepalive_s,
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,  # never trust X-Forwarded-* from a client
            server_header=False,
            headers=[("server", server_header)],
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            h11_max_incomplete_event_size=MAX_HEAD,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # "off": a no-op (what Server.serve() sets up first)
        try:
            await server.startup(sockets=sockets)
        except BaseException:
            for s in sockets:
                s.close()
            raise
        await server.on_tick(0)  # the default headers (Date, Server) are set on ticks
        return cls(server, sockets, server_header)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.server.on_tick(0)

    def stop_listening(self) -> None:
        for s in self.server.servers:
            s.close()

    async def stop(self) -> None:
        """Stop listening, let in-flight HTTP responses finish (SHUTDOWN_GRACE_S at most), close the rest."""
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        await self.server.shutdown(sockets=self.sockets)
