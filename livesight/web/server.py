"""The WebSocket server (websockets' asyncio API), with plain HTTP on the same port.

    server = WSServer(service, cfg.server)      # service: any ServiceAPI
    port = await server.start()                 # port 0 → a free port; raises ServeError (one line) on failure
    ...
    await server.close()                        # clients get close code 1001; waits for their handlers

One `ClientSession` per connection (ws_session.py). HTTP routes and handshake checks: http_routes.py; camera
pictures: image_routes.py; the OpenAI-compatible API (`/v1/`, requests with bodies): openai_http.py, reached through
http_divert.py's connection class.
Metrics: metrics.py (own registry per server). Wire format: events.py and docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection

from livesight.config import ServerConfig
from livesight.contract.api import ImageSource, ServiceAPI
from livesight.web.http_divert import diverting_factory
from livesight.web.http_routes import Gatekeeper, HttpRoutes, load_static
from livesight.web.image_routes import ImageRoutes
from livesight.web.metrics import ServerMetrics
from livesight.web.openai_routes import PREFIX as OPENAI_PREFIX
from livesight.web.openai_routes import OpenAIHTTP
from livesight.web.parts_metrics import PartsCollector
from livesight.web.transport import keepalive_timed_out, listen
from livesight.web.ws_session import ClientLimits, ClientSession

log = logging.getLogger(__name__)


class WSServer:
    def __init__(
        self,
        service: ServiceAPI,
        cfg: ServerConfig,
        *,
        page_dir: Path | None = None,
        limits: ClientLimits | None = None,
        images: ImageSource | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.page_dir = page_dir
        self.limits = limits or ClientLimits()
        self.images = images  # camera pictures under /api/cameras/ (image_routes.py); None: not served
        self.metrics = ServerMetrics(service)
        self.sessions: dict[str, ClientSession] = {}
        self.port: int | None = None
        self.clients_dropped_slow = 0  # clients disconnected because they did not read fast enough
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self._salt = secrets.token_hex(3)
        # POST /v1/chat/completions needs a request body and a streamed answer: served beside websockets
        self.openai = OpenAIHTTP(service, Gatekeeper(cfg), max_body=cfg.max_message_bytes)
        self.request_line_timeout_s = 10.0  # a connection that sends no request line in time is dropped
        self.metrics.registry.register(PartsCollector(self.openai.counters, images))

    async def start(self) -> int:
        """Listen; return the bound port. Raises ServeError with one clear line when it cannot."""
        if self._server is not None:
            raise RuntimeError("already started")
        static = await asyncio.to_thread(load_static, self.page_dir)
        gate = Gatekeeper(self.cfg)
        api = (
            ImageRoutes(self.images, gate, same_origin_only=gate.same_origin_only) if self.images is not None else None
        )
        routes = HttpRoutes(self.cfg, health=self.service.health, metrics=self._metrics, static=static, api=api)
        self._server, self.port = await listen(
            self._handle,
            self.cfg,
            self.limits,
            routes=routes,
            server_header="livesight",
            create_connection=diverting_factory(
                self.openai.divert, (OPENAI_PREFIX,), sniff_timeout_s=self.request_line_timeout_s
            ),
        )
        return self.port

    async def close(self) -> None:
        """Stop listening, close every client with 1001 (going away), wait for their handlers to finish."""
        if self._server is None:
            return
        self._server.close()
        await self.openai.close()
        await self._server.wait_closed()
        self._server = None

    def _metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), self.metrics.content_type

    async def _handle(self, conn: ServerConnection) -> None:
        session_id = f"sess_{self._salt}{next(self._ids)}"
        session = ClientSession(
            service=self.service,
            conn=conn,
            session_id=session_id,
            queue_size=self.cfg.client_queue,
            limits=self.limits,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
        )
        self.sessions[session_id] = session
        self.metrics.clients.inc()
        log.info("client %s connected from %s", session_id, _peer(conn))
        try:
            await session.run()
        finally:
            self.metrics.clients.dec()
            del self.sessions[session_id]
            if session.counters.dropped_slow:
                self.clients_dropped_slow += 1
            elif keepalive_timed_out(conn):
                self.metrics.clients_dropped.labels("keepalive").inc()
            log.info(
                "client %s disconnected (code %s%s)",
                session_id,
                conn.close_code,
                ", too slow" if session.counters.dropped_slow else "",
            )


def _peer(conn: ServerConnection) -> str:
    addr = conn.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)
