"""A node's door for the fleet gateway, beside the port's own routes: `/fleet` (WebSocket) and `/fleet/api/…` (GET).

    server = WebServer(service, cfg.server, images=images, fleet_link=FleetLink(token=cfg.fleet.token))

- `WS /fleet`: the gateway's **link** — one connection per gateway replica that carries every gateway client's
  questions and watches for this node's cameras (the gateway gives them ids unique on the link and maps the answers
  back, docs/fleet.md). It is the ordinary WebSocket protocol and the ordinary session (protocols/web/ws_session.py, the
  session core), with link-sized limits (LINK_LIMITS: the gateway enforces each client's own limits before its messages
  reach the link) and a send queue of LINK_QUEUE events (a gateway that stops reading is dropped, code 4000, as any slow
  client is). The node's own limits (its response queue, its daemon-wide watch limit) apply unchanged.
- `GET /fleet/api/cameras/…`: the camera pictures of image_routes.py, for the gateway's picture proxy; keep-alive
  allowed here (the gateway holds a few connections per node instead of one per picture).

Who may use it: the fleet's own credential (`fleet.node_token`, a bearer token), never the client-facing
`server.auth_token`; a request with an `Origin` header is refused (403: a browser has no business here). Without a
`node_token` (a fleet on loopback only: config.py refuses it beyond loopback) no token is asked, and only a loopback
`Host` is served (a web page whose name was rebound to 127.0.0.1 sends its own name: 403).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from livesight.config import is_loopback
from livesight.protocols.contract.session import ClientLimits
from livesight.protocols.web.responses import text_response

log = logging.getLogger(__name__)

LINK_PATH = "/fleet"
LINK_QUEUE = 16384  # events waiting for the gateway (every client's answers and the broadcasts share the link)
LINK_LIMITS = ClientLimits(
    max_concurrent_queries=1024,
    rate_per_s=5000.0,
    burst=10000,
    max_watches=4096,
    close_timeout_s=2.0,
    keepalive_s=20.0,
)


@dataclass(frozen=True, slots=True)
class FleetLink:
    """The node side of the gateway link: the credential it asks for (None: none, loopback only)."""

    token: str | None


class FleetLinkGate:
    """ASGI: `/fleet` and `/fleet/…` are handled here (credential first); every other request goes to `app`."""

    def __init__(self, app: ASGIApp, *, link: FleetLink, ws: ASGIApp, pictures: ASGIApp | None) -> None:
        self.app = app
        self._token = link.token.encode() if link.token else None
        self.ws = ws
        self.pictures = pictures
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (path == LINK_PATH or path.startswith(LINK_PATH + "/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "origin" in headers:
            self.refused += 1
            await _answer(text_response(403, "the fleet link takes no browser requests\n"), scope, receive, send)
            return
        if self._token is None and not _loopback_host(headers.get("host", "")):
            self.refused += 1
            await _answer(text_response(403, "host not allowed\n"), scope, receive, send)
            return
        if not self._authorized(headers):
            self.refused += 1
            log.warning("fleet link: refused a request without the fleet's credential (%s %s)", scope["type"], path)
            extra = {"WWW-Authenticate": 'Bearer realm="livesight-fleet"'}
            await _answer(text_response(401, "missing or wrong fleet credential\n", extra), scope, receive, send)
            return
        if scope["type"] == "websocket":
            if path != LINK_PATH:
                await _answer(text_response(404, "not found\n"), scope, receive, send)
                return
            await self.ws(scope, receive, send)
            return
        inner = path[len(LINK_PATH) :]
        if scope["method"] != "GET" or not inner.startswith("/api/") or self.pictures is None:
            await _answer(text_response(404, "not found\n"), scope, receive, send)
            return
        await self.pictures({**scope, "path": inner, "raw_path": inner.encode()}, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        if self._token is None:
            return True
        auth = headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        return bool(given) and hmac.compare_digest(given, self._token)


def _loopback_host(host: str) -> bool:
    """Is the Host header a loopback name (127.x, ::1, localhost), with or without a port?"""
    if host.startswith("["):  # [::1]:8765
        name = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:  # 127.0.0.1:8765, localhost:8765
        name = host.split(":", 1)[0]
    else:  # no port, or a bare IPv6 address
        name = host
    return is_loopback(name.lower())


async def _answer(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """An HTTP answer; to a WebSocket handshake too (ASGI's websocket.http.response, which uvicorn offers)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})  # pragma: no cover - uvicorn has the extension
        return
    await response(scope, receive, send)
