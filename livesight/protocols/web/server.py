"""The daemon's web face: one port for the WebSocket protocol, the chat page, /healthz, /metrics, camera pictures and
the OpenAI-compatible API, on uvicorn + Starlette.

    server = WebServer(service, cfg.server, images=images)   # service: any ServiceAPI
    port = await server.start()          # port 0 → a free port; raises ServeError (one line) on failure
    ...
    await server.close()                 # clients get close code 1001; waits for their handlers

Where each part lives: the routes of the page, /healthz and /metrics in http_routes.py; pictures in image_routes.py;
`/v1/` in openai_routes.py (mapping: openai_api.py); the WebSocket endpoint in ws_endpoint.py and one ClientSession
per client in ws_session.py (around the session core, protocols/contract/session.py); who may reach what in access.py
(the rules: `access_rules` below); uvicorn in transport.py; metrics in metrics.py. Wire format:
protocols/contract/events.py and docs/protocol.md. The fleet gateway serves the same app shape (`build_app`) under the
same rules (`access_rules`) with its own sessions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from livesight.config import ServerConfig
from livesight.protocols.contract.api import ImageSource, ServiceAPI, SummarySource, TimelineSource
from livesight.protocols.web.access import AccessMiddleware, Gatekeeper, Refusal, Rule
from livesight.protocols.web.fleet_link import LINK_LIMITS, LINK_QUEUE, FleetLink, FleetLinkGate
from livesight.protocols.web.history.summary_routes import SummaryRoutes
from livesight.protocols.web.history.timeline_routes import TimelineRoutes
from livesight.protocols.web.http_routes import load_static, not_found, page_routes
from livesight.protocols.web.image_routes import ImageRoutes
from livesight.protocols.web.metrics import PartsCollector, ServerMetrics
from livesight.protocols.web.openai_routes import PREFIX as OPENAI_PREFIX
from livesight.protocols.web.openai_routes import OpenAIRoutes
from livesight.protocols.web.transport import Transport
from livesight.protocols.web.ws_endpoint import WSConn, WSEndpoint
from livesight.protocols.web.ws_session import ClientLimits, ClientSession

WS_PATHS = ("/", "/ws")


def build_app(
    *,
    gate: Gatekeeper,
    routes: list[BaseRoute],
    ws: WSEndpoint,
    rules: list[Rule],
    mounts: dict[str, ASGIApp] | None = None,
    server_header: str = "livesight",
) -> ASGIApp:
    """The port's ASGI app: access checks first (access.py), then `mounts` (path prefix → ASGI app, e.g. /v1/),
    then the Starlette routes with the WebSocket endpoint on WS_PATHS."""
    router = Starlette(
        routes=[*(WebSocketRoute(p, ws) for p in WS_PATHS), *routes],
        exception_handlers={404: not_found, 405: not_found},
    )
    prefixes = mounts or {}

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for prefix, app in prefixes.items():
                if scope["path"].startswith(prefix):
                    await app(scope, receive, send)
                    return
        await router(scope, receive, send)

    ws_rule = Rule("/", origin=True, token=True)
    return AccessMiddleware(
        dispatch,
        gate=gate,
        rules=rules,
        ws_paths=WS_PATHS,
        ws_rule=ws_rule,
        any_method=tuple(prefixes),
        server_header=server_header,
    )


def access_rules(*, openai_refuse: Refusal, pictures: bool = True) -> list[Rule]:
    """Who may reach what on a face's port, the daemon's and the gateway's alike (first match wins; access.py applies
    them): /metrics needs the token; the OpenAI API (/v1/) the Origin check and the token, and each request holds one
    of server.max_clients' slots while its answer streams (refused in the API's own JSON); pictures (/api/) the Origin
    check and the token (the timeline's search and keyframes too). The page and /healthz are open (/healthz shows
    details only to a request with the token)."""
    rules = [
        Rule("/metrics", token=True),
        Rule(OPENAI_PREFIX, origin=True, token=True, counted=True, refuse=openai_refuse),
    ]
    if pictures:
        rules.append(Rule("/api/", origin=True, token=True))
    return rules


class WebServer:
    def __init__(
        self,
        service: ServiceAPI,
        cfg: ServerConfig,
        *,
        page_dir: Path | None = None,
        limits: ClientLimits | None = None,
        images: ImageSource | None = None,
        fleet_link: FleetLink | None = None,
        timeline: TimelineSource | None = None,
        summaries: SummarySource | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.page_dir = page_dir
        self.limits = limits or ClientLimits(max_watches=cfg.watches_per_client)
        self.images = images  # camera pictures under /api/cameras/ (image_routes.py); None: not served
        self.timeline = timeline  # /api/scenes, keyframes, searchable scene lists (history/timeline_routes.py)
        self.summaries = summaries  # /api/cameras/<id>/summary (history/summary_routes.py); None: not served
        self.metrics = ServerMetrics(service)
        self.gate = Gatekeeper(cfg)
        self.openai = OpenAIRoutes(service, max_body=cfg.max_message_bytes)
        self.metrics.registry.register(PartsCollector(self.openai.counters, images, gate=self.gate))
        self.ws = WSEndpoint(
            make_session=self._session,
            metrics=self.metrics,
            id_prefix="sess_",
            close_timeout_s=self.limits.close_timeout_s,
        )
        self.fleet_link = (
            fleet_link  # in a fleet: the gateway's link (/fleet) and pictures (/fleet/api/), fleet_link.py
        )
        self.links = WSEndpoint(
            make_session=self._link_session,
            metrics=self.metrics,
            id_prefix="link_",
            close_timeout_s=LINK_LIMITS.close_timeout_s,
            label="gateway link",
        )
        self.port: int | None = None
        self.request_line_timeout_s = 10.0  # a connection that sends no complete request head in time is dropped
        self._transport: Transport | None = None

    @property
    def sessions(self) -> dict[str, Any]:
        return self.ws.sessions

    @property
    def clients_dropped_slow(self) -> int:
        return self.ws.clients_dropped_slow

    def access_rules(self) -> list[Rule]:
        """This port's rules (`access_rules`, shared with the gateway); /api/ when it serves pictures, the timeline
        or summaries."""
        served = self.images is not None or self.timeline is not None or self.summaries is not None
        return access_rules(openai_refuse=self.openai.refuse, pictures=served)

    async def start(self) -> int:
        """Listen; return the bound port. Raises ServeError with one clear line when it cannot."""
        if self._transport is not None:
            raise RuntimeError("already started")
        static = await asyncio.to_thread(load_static, self.page_dir)
        routes = page_routes(health=self.service.health, metrics=self._metrics, static=static)
        routes = self._api_routes(same_origin_only=self.gate.same_origin_only) + routes
        app = build_app(
            gate=self.gate, routes=routes, ws=self.ws, rules=self.access_rules(), mounts={OPENAI_PREFIX: self.openai}
        )
        if self.fleet_link is not None:
            api = self._api_routes(same_origin_only=False)  # CORP "cross-origin": the gateway serves them itself
            pictures = Starlette(routes=api) if api else None
            app = FleetLinkGate(app, link=self.fleet_link, ws=self.links, pictures=pictures)
        self._transport = await Transport.start(
            app, self.cfg, self.limits, server_header="livesight", head_timeout_s=self.request_line_timeout_s
        )
        self.port = self._transport.port
        return self.port

    async def close(self) -> None:
        """Stop listening, close every client with 1001 (going away), wait for their handlers, then the rest."""
        if self._transport is None:
            return
        transport, self._transport = self._transport, None
        transport.stop_listening()
        await self.ws.close_all()
        await self.links.close_all()
        await transport.stop()

    def _api_routes(self, *, same_origin_only: bool) -> list[BaseRoute]:
        """/api/: the summaries' and the timeline's routes (before the pictures' catch-all), the pictures'."""
        routes: list[BaseRoute] = SummaryRoutes(self.summaries).routes() if self.summaries is not None else []
        scene_list = None
        if self.timeline is not None:
            timeline = TimelineRoutes(self.timeline, same_origin_only=same_origin_only)
            routes += timeline.routes()
            scene_list = timeline.camera_scenes
        if self.images is not None:
            routes += ImageRoutes(self.images, same_origin_only=same_origin_only, scene_list=scene_list).routes()
        return routes

    def _metrics(self) -> tuple[bytes, str]:
        return self.metrics.render(), self.metrics.content_type

    def _session(self, conn: WSConn, session_id: str) -> ClientSession:
        return ClientSession(
            service=self.service,
            conn=conn,
            session_id=session_id,
            queue_size=self.cfg.client_queue,
            limits=self.limits,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
        )

    def _link_session(self, conn: WSConn, session_id: str) -> ClientSession:
        """A gateway's link: the ordinary session with link-sized limits (fleet_link.py)."""
        return ClientSession(
            service=self.service,
            conn=conn,
            session_id=session_id,
            queue_size=LINK_QUEUE,
            limits=LINK_LIMITS,
            metrics=self.metrics,
            max_message_bytes=self.cfg.max_message_bytes,
        )
