"""The gateway's server: the daemon's WebSocket protocol, chat page, /healthz and /metrics, for the whole fleet.

    gw = GatewayServer(directory, cfg.server)
    port = await gw.start()          # port 0 → a free port; ServeError (one line) when it cannot listen
    ...
    await gw.close()

HTTP and the handshake checks (token, origin) are the daemon's own (web/http_routes.py). One GatewaySession
per client. Health: `starting` until the directory has synced from MQTT once; then `degraded` while a camera's node
is offline or the broker is unreachable, `ok` otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import Any

from prometheus_client import Counter, Gauge
from websockets.asyncio.server import Server, ServerConnection

from livesight.config import ServerConfig
from livesight.contract.api import StatsSnapshot
from livesight.gateway.directory import Directory
from livesight.gateway.session import GatewaySession
from livesight.web.http_routes import HttpRoutes, load_static
from livesight.web.metrics import ServerMetrics
from livesight.web.transport import keepalive_timed_out, listen
from livesight.web.ws_session import ClientLimits

log = logging.getLogger(__name__)


class _FleetStats:
    """What the metrics collector reads at scrape time: per camera its state and whether its node is online."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def stats(self) -> StatsSnapshot:
        cams: dict[str, dict[str, Any]] = {}
        for cam in self.directory.cameras():
            e = self.directory.entry(cam)
            cams[cam] = {"state": e.state, "available": 1 if e.available else 0}
        return StatsSnapshot(time.time(), cams, {})


class GatewayMetrics:
    def __init__(self, directory: Directory) -> None:
        self.server = ServerMetrics(_FleetStats(directory))  # type: ignore[arg-type]
        r = self.server.registry
        self.upstream_connects = Counter(
            "livesight_gateway_upstream_connects", "WebSocket connections opened to nodes", ["node"], registry=r
        )
        self.unavailable = Counter(
            "livesight_gateway_unavailable",
            "questions and watches refused at once because the camera's node was not connected",
            registry=r,
        )
        self.nodes_online = Gauge("livesight_gateway_nodes_online", "nodes the directory has online", registry=r)
        self.nodes_online.set_function(lambda: sum(1 for n in directory.nodes.values() if n.online))


class GatewayServer:
    def __init__(
        self, directory: Directory, cfg: ServerConfig, *, prefix: str = "livesight", limits: ClientLimits | None = None
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.prefix = prefix
        self.limits = limits or ClientLimits()
        self.metrics = GatewayMetrics(directory)
        self.sessions: dict[str, GatewaySession] = {}
        self.port: int | None = None
        self.started = time.time()
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self._salt = secrets.token_hex(3)

    async def start(self) -> int:
        static = await asyncio.to_thread(load_static, None)
        routes = HttpRoutes(self.cfg, health=self.health, metrics=self._metrics, static=static)
        self._server, self.port = await listen(
            self._handle,
            self.cfg,
            self.limits,
            routes=routes,
            server_header="livesight-gateway",
        )
        return self.port

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    def health(self) -> dict[str, Any]:
        d = self.directory
        cams = {}
        for cam in d.cameras():
            e = d.entry(cam)
            cams[cam] = {"node": e.node, "state": e.state, "reason": e.reason, "available": e.available}
        nodes = {n: {"online": st.online, "since": st.since, "url": d.url(n)} for n, st in d.nodes.items()}
        if not d.synced:
            status = "starting"
        elif not d.mqtt_connected or not all(c["available"] for c in cams.values()):
            status = "degraded"
        else:
            status = "ok"
        models = sorted({(i.model, i.random_weights) for i in d.infos.values() if i.model})
        model = {"name": models[0][0], "random_weights": models[0][1]} if models else {}
        if len(models) > 1:
            model["others"] = [m for m, _ in models[1:]]
        return {
            "status": status,
            "role": "gateway",
            "model": model,
            "uptime_s": round(time.time() - self.started, 1),
            "mqtt": {"connected": d.mqtt_connected, "prefix": self.prefix, "ignored": d.ignored},
            "nodes": nodes,
            "cameras": cams,
            "clients": len(self.sessions),
        }

    def _metrics(self) -> tuple[bytes, str]:
        return self.metrics.server.render(), self.metrics.server.content_type

    async def _handle(self, conn: ServerConnection) -> None:
        session_id = f"gw_{self._salt}{next(self._ids)}"
        session = GatewaySession(
            directory=self.directory,
            conn=conn,
            session_id=session_id,
            queue_size=self.cfg.client_queue,
            limits=self.limits,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
            token=self.cfg.auth_token,
        )
        self.sessions[session_id] = session
        self.metrics.server.clients.inc()
        log.info("gateway client %s connected", session_id)
        try:
            await session.run()
        finally:
            self.metrics.server.clients.dec()
            del self.sessions[session_id]
            if keepalive_timed_out(conn):
                self.metrics.server.clients_dropped.labels("keepalive").inc()
            log.info("gateway client %s disconnected (code %s)", session_id, conn.close_code)
