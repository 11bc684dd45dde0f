"""The gateway's server: every surface of a daemon, for every camera of the fleet, on one port.

    gw = GatewayServer(directory, cfg.server, prefix=cfg.mqtt.prefix, node_token=cfg.fleet.token)
    port = await gw.start()          # port 0 → a free port; ServeError (one line) when it cannot listen
    ...
    await gw.close()

The web face is the daemon's (livesight/protocols/web/: uvicorn + Starlette, the same access rules, page and health
routes):
- the WebSocket protocol: one GatewaySession per client (session.py), all of them over one link per node (hub.py);
- `/v1/` (the OpenAI-compatible API): the daemon's own OpenAIRoutes over a FleetService, so questions go over the
  same links and the answers have the daemon's shapes; a camera whose node is down gets 503 `camera_unavailable`;
- `/api/cameras/…` (pictures, scenes, summaries): relayed from the camera's node (api/pictures.py); `/api/scenes`
  asks every node and merges, naming the nodes missing; keyframes come from the node that holds them (api/scenes.py);
- `/`: the daemon's page; `/healthz`, `/metrics`: built from the directory and the links in O(cameras), only when
  something changed and at most every HEALTH_EVERY_S / METRICS_EVERY_S (health.py).

Health: `starting` until the directory has synced from MQTT once; then `degraded` while a camera's node is offline or
not linked, or the broker is unreachable; `ok` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Route

from livesight.config import ServerConfig
from livesight.gateway.api.node_http import NodeHTTP
from livesight.gateway.api.pictures import PictureProxy
from livesight.gateway.api.scenes import FleetScenes
from livesight.gateway.directory import Directory
from livesight.gateway.fleet_service import FleetService
from livesight.gateway.health import HealthCache
from livesight.gateway.hub import UpstreamHub
from livesight.gateway.session import GatewaySession
from livesight.protocols.contract.api import StatsSnapshot
from livesight.protocols.web.access import Gatekeeper
from livesight.protocols.web.http_routes import load_static, page_routes
from livesight.protocols.web.metrics import PartsCollector, ServerMetrics
from livesight.protocols.web.openai_routes import PREFIX as OPENAI_PREFIX
from livesight.protocols.web.openai_routes import OpenAIRoutes
from livesight.protocols.web.server import access_rules, build_app
from livesight.protocols.web.transport import Transport
from livesight.protocols.web.ws_endpoint import WSConn, WSEndpoint
from livesight.protocols.web.ws_session import ClientLimits

log = logging.getLogger(__name__)

SERVER_HEADER = "livesight-gateway"
HEALTH_EVERY_S = 0.5  # /healthz is rebuilt at most this often (and only when the directory or a link changed)
METRICS_EVERY_S = 1.0  # /metrics is rendered at most this often


class _FleetStats:
    """What the metrics collector reads at scrape time: per camera its state and whether it can be reached."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def stats(self) -> StatsSnapshot:
        """Read in the metrics thread: the health body last built on the loop (never a rebuild here)."""
        cams = {
            c: {"state": v["state"], "available": 1 if v["available"] else 0}
            for c, v in self.server.health_cache.last_body().get("cameras", {}).items()
        }
        return StatsSnapshot(time.time(), cams, {})


class _LinkCollector(Collector):
    """The links, read at scrape time: connections open per node (1 at most), messages refused, directory trust."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        hub = self.server.hub
        conns = GaugeMetricFamily(
            "livesight_gateway_upstream_connections", "WebSocket connections open to each node", labels=["node"]
        )
        refused = CounterMetricFamily(
            "livesight_gateway_link_refused", "messages for a node refused at the gateway (link busy)", labels=["node"]
        )
        for node, link in sorted(hub.links.items()):  # one C call: safe beside the loop's changes
            conns.add_metric([node], float(link.open_connections))
            refused.add_metric([node], float(link.refused))
        yield conns
        yield refused
        yield CounterMetricFamily(
            "livesight_gateway_directory_untrusted",
            "camera announcements ignored: not signed with the fleet's credential",
            value=float(self.server.directory.untrusted),
        )
        refused = CounterMetricFamily(
            "livesight_gateway_directory_refused",
            "camera announcements refused, by reason: untrusted (not signed by the fleet), foreign (a node not in "
            "fleet.nodes), stale, future, undated (no fresh issue time), replayed (a counter already taken)",
            labels=["reason"],
        )
        for reason, n in sorted(dict(self.server.directory.refused).items()):
            refused.add_metric([reason], float(n))
        yield refused
        yield CounterMetricFamily(
            "livesight_gateway_unroutable",
            "node events for a question or watch no client holds any more",
            value=float(hub.unroutable),
        )


class GatewayMetrics:
    def __init__(self, server: GatewayServer) -> None:
        self.server = ServerMetrics(_FleetStats(server))  # type: ignore[arg-type]
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
        directory = server.directory
        self.nodes_online = Gauge("livesight_gateway_nodes_online", "nodes the directory has online", registry=r)
        self.nodes_online.set_function(lambda: sum(1 for n in list(directory.nodes.values()) if n.online))
        r.register(_LinkCollector(server))


class GatewayServer:
    def __init__(
        self,
        directory: Directory,
        cfg: ServerConfig,
        *,
        prefix: str = "livesight",
        limits: ClientLimits | None = None,
        node_token: str | None = None,
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.prefix = prefix
        self.limits = limits or ClientLimits()
        self.gate = Gatekeeper(cfg)
        self.metrics = GatewayMetrics(self)
        self.hub = UpstreamHub(
            directory,
            token=node_token,
            stats_interval_s=cfg.stats_interval_s,
            on_link_up=lambda node: self.metrics.upstream_connects.labels(node).inc(),
            on_unavailable=self.metrics.unavailable.inc,
        )
        # the OpenAI-compatible API: one FleetService for every HTTP request (it wants no broadcasts)
        self.http_service = FleetService(
            self.hub, session_id="http", on_response_id_clash=self.metrics.response_id_clashes.inc
        )
        self.http_service.proactive = False
        self.openai = OpenAIRoutes(self.http_service, max_body=cfg.max_message_bytes)  # type: ignore[arg-type]
        self.node_http = NodeHTTP(self.hub, token=node_token)  # /api/…: the nodes' /fleet/api/ (gateway/api/)
        self.pictures = PictureProxy(self.node_http, same_origin_only=self.gate.same_origin_only)
        self.scenes = FleetScenes(self.node_http, same_origin_only=self.gate.same_origin_only)
        self.metrics.server.registry.register(
            PartsCollector(self.openai.counters, _PictureCounters(self.pictures, self.scenes), gate=self.gate)
        )
        self.ws = WSEndpoint(
            make_session=self._session,
            metrics=self.metrics.server,
            id_prefix="gw_",
            close_timeout_s=self.limits.close_timeout_s,
            label="gateway client",
        )
        self.health_cache = HealthCache(
            build=self._build_health,
            versions=lambda: (directory.version, self.hub.version),
            clients=lambda: len(self.sessions),
            render_metrics=self.metrics.server.render,
            content_type=self.metrics.server.content_type,
            every_s=HEALTH_EVERY_S,
            metrics_every_s=METRICS_EVERY_S,
        )
        self.port: int | None = None
        self._transport: Transport | None = None
        self._hub_task: asyncio.Task[None] | None = None

    @property
    def sessions(self) -> dict[str, Any]:
        return self.ws.sessions

    async def start(self) -> int:
        static = await asyncio.to_thread(load_static, None)
        page = page_routes(health=self.health, metrics=self._metrics, static=static)
        page = [r for r in page if getattr(r, "path", "") not in ("/healthz", "/metrics")]  # health.py's instead
        api = [
            Route("/api/scenes", self.scenes.search),
            Route("/api/timeline/{rest:path}", self.scenes.keyframe),
            Route("/api/{rest:path}", self.pictures.endpoint),
        ]
        routes = self.health_cache.routes() + api + page
        app = build_app(
            gate=self.gate,
            routes=routes,
            ws=self.ws,
            rules=access_rules(openai_refuse=self.openai.refuse),  # the node's own (a /v1/ answer holds a client slot)
            mounts={OPENAI_PREFIX: self.openai},
            server_header=SERVER_HEADER,
        )
        self._hub_task = asyncio.create_task(self.hub.run(), name="gateway:links")
        self.hub.register(self.http_service)
        try:
            self._transport = await Transport.start(app, self.cfg, self.limits, server_header=SERVER_HEADER)
        except BaseException:
            await self._stop_hub()
            raise
        self.port = self._transport.port
        return self.port

    async def close(self) -> None:
        if self._transport is None:
            return
        transport, self._transport = self._transport, None
        transport.stop_listening()
        await self.ws.close_all()
        await transport.stop()
        await self._stop_hub()
        await self.node_http.close()

    async def _stop_hub(self) -> None:
        self.hub.unregister(self.http_service)
        if self._hub_task is not None:
            self._hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub_task
            self._hub_task = None

    # ---- health and metrics ---------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """/healthz's body (health.py caches it: rebuilt only when the directory or a link changed)."""
        return self.health_cache.body()

    def _build_health(self) -> dict[str, Any]:
        d, hub = self.directory, self.hub
        cams: dict[str, dict[str, Any]] = {}
        all_available = True
        for cam in d.cameras():
            node = d.owner(cam)
            link = hub.links.get(node) if node is not None else None
            available = d.online(node) and link is not None and link.connected
            all_available = all_available and available
            state, reason = hub.camera_state(cam)
            cams[cam] = {"node": node, "state": state, "reason": reason, "available": available}
        nodes = {}
        for n, st in d.nodes.items():
            link = hub.links.get(n)
            nodes[n] = {
                "online": st.online,
                "since": st.since,
                "url": d.url(n),
                "url_from": d.url_source(n),
                "linked": link is not None and link.connected,
                "link_connects": link.connects if link is not None else 0,
                "link_error": link.last_error if link is not None and not link.connected else "",
            }
        if not d.synced:
            status = "starting"
        elif not d.mqtt_connected or not all_available:
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
            "mqtt": {
                "connected": d.mqtt_connected,
                "prefix": self.prefix,
                "ignored": d.ignored,
                "untrusted": d.untrusted,
                "refused": dict(sorted(d.refused.items())),
            },
            "links": {
                "connected": sum(1 for lk in hub.links.values() if lk.connected),
                "open_connections": sum(lk.open_connections for lk in hub.links.values()),
            },
            "nodes": nodes,
            "cameras": cams,
        }

    def _metrics(self) -> tuple[bytes, str]:
        return self.metrics.server.render(), self.metrics.server.content_type

    def _session(self, conn: WSConn, session_id: str) -> GatewaySession:
        return GatewaySession(
            hub=self.hub,
            conn=conn,
            session_id=session_id,
            queue_size=self.cfg.client_queue,
            limits=self.limits,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
        )


class _PictureCounters:
    """The picture proxy's counters as an ImageSource's `counters()` (for the metrics' PartsCollector)."""

    def __init__(self, proxy: PictureProxy, scenes: FleetScenes) -> None:
        self.proxy = proxy
        self.scenes = scenes

    def counters(self) -> dict[str, int]:
        scenes = {f"scenes_{k}": v for k, v in dataclasses.asdict(self.scenes.counters).items()}
        return {**dataclasses.asdict(self.proxy.counters), **scenes}
