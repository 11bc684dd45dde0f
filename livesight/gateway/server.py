"""The gateway's server: the daemon's WebSocket protocol, chat page, /healthz and /metrics, for the whole fleet.

    gw = GatewayServer(directory, cfg.server)
    port = await gw.start()          # port 0 → a free port; ServeError (one line) when it cannot listen
    ...
    await gw.close()

The web face is the daemon's (livesight/web/: uvicorn + Starlette, the same access rules, page and health routes),
with one GatewaySession per WebSocket client. Health: `starting` until the directory has synced from MQTT once; then
`degraded` while a camera's node is offline or the broker is unreachable, `ok` otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge

from livesight.config import ServerConfig
from livesight.contract.api import StatsSnapshot
from livesight.gateway.directory import Directory
from livesight.gateway.session import GatewaySession
from livesight.web.access import Gatekeeper, Rule
from livesight.web.http_routes import load_static, page_routes
from livesight.web.metrics import ServerMetrics
from livesight.web.server import build_app
from livesight.web.transport import Transport
from livesight.web.ws_endpoint import WSConn, WSEndpoint
from livesight.web.ws_session import ClientLimits

log = logging.getLogger(__name__)

SERVER_HEADER = "livesight-gateway"


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
        self.response_id_clashes = Counter(
            "livesight_gateway_response_id_clashes",
            "responses of a node whose id another node's live response held for the same client (renamed)",
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
        self.ws = WSEndpoint(
            make_session=self._session,
            metrics=self.metrics.server,
            id_prefix="gw_",
            close_timeout_s=self.limits.close_timeout_s,
            label="gateway client",
        )
        self.port: int | None = None
        self.started = time.time()
        self._transport: Transport | None = None

    @property
    def sessions(self) -> dict[str, Any]:
        return self.ws.sessions

    async def start(self) -> int:
        static = await asyncio.to_thread(load_static, None)
        routes = page_routes(health=self.health, metrics=self._metrics, static=static)
        app = build_app(
            gate=Gatekeeper(self.cfg),
            routes=routes,
            ws=self.ws,
            rules=[Rule("/metrics", token=True)],
            server_header=SERVER_HEADER,
        )
        self._transport = await Transport.start(app, self.cfg, self.limits, server_header=SERVER_HEADER)
        self.port = self._transport.port
        return self.port

    async def close(self) -> None:
        if self._transport is None:
            return
        transport, self._transport = self._transport, None
        transport.stop_listening()
        await self.ws.close_all()
        await transport.stop()

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

    def _session(self, conn: WSConn, session_id: str) -> GatewaySession:
        return GatewaySession(
            directory=self.directory,
            conn=conn,
            session_id=session_id,
            queue_size=self.cfg.client_queue,
            limits=self.limits,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
            token=self.cfg.auth_token,
        )
