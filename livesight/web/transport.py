"""One way to listen for WebSocket + HTTP clients, for the daemon's server and the fleet gateway: the same limits
(message size, queue, close timeout, keep-alive pings) and one clear line when the port cannot be had."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from livesight.config import ServerConfig
from livesight.contract.session import ClientLimits
from livesight.errors import ServeError

# websockets logs every HTTP response and connection at INFO (a /metrics scrape every 15 s would flood the log);
# our sessions log connects/disconnects themselves. Set this logger to DEBUG to see the transport chatter.
transport_log = logging.getLogger("livesight.web.transport")
if transport_log.level == logging.NOTSET:
    transport_log.setLevel(logging.WARNING)

WHY = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "no such local address",
    errno.EACCES: "permission denied",
}


async def listen(
    handler: Callable[[ServerConnection], Awaitable[None]],
    cfg: ServerConfig,
    limits: ClientLimits,
    *,
    routes: Any,
    server_header: str,
    **extra: Any,
) -> tuple[Server, int]:
    """Serve `handler` (WebSocket) and `routes` (plain HTTP) on cfg.host:cfg.port → (server, the bound port).
    Raises ServeError naming the address and why (in use, no such address, permission denied)."""
    try:
        server = await serve(
            handler,
            cfg.host,
            cfg.port,
            process_request=routes,
            max_size=cfg.max_message_bytes,
            max_queue=16,
            close_timeout=limits.close_timeout_s,
            ping_interval=limits.keepalive_s,
            ping_timeout=limits.keepalive_s,
            server_header=server_header,
            logger=transport_log,
            **extra,
        )
    except OSError as e:
        why = WHY.get(e.errno or 0, e.strerror or str(e))
        raise ServeError(f"cannot listen on {cfg.host}:{cfg.port}: {why}") from None
    sockets = server.sockets
    return server, int(sockets[0].getsockname()[1]) if sockets else cfg.port


def keepalive_timed_out(conn: ServerConnection) -> bool:
    """Did the server drop this connection because its pings went unanswered (a client that stopped reading, or
    a dead peer)? websockets then fails the connection with 1011 "keepalive ping timeout"."""
    sent = getattr(conn.protocol, "close_sent", None)
    return sent is not None and sent.code == 1011 and "keepalive" in (sent.reason or "")
