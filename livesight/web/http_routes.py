"""Plain HTTP on the WebSocket port, answered from websockets' `process_request`, plus the handshake checks.

Routes: `GET /` (chat page) and its assets, `GET /healthz` (JSON; 200 when ok/degraded, 503 otherwise),
`GET /metrics` (Prometheus text). A WebSocket upgrade on `/` or `/ws` passes through the origin and bearer-token
checks. Everything here is synchronous and cheap: it runs on the event loop.
"""

from __future__ import annotations

import email.utils
import hmac
import http
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from livesight.config import ServerConfig

log = logging.getLogger(__name__)

WS_PATHS = ("/", "/ws")
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
DEFAULT_PAGE_DIR = Path(__file__).parent / "static"
_PAGE_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEALTHY = ("ok", "degraded")


def load_static(page_dir: Path | None) -> dict[str, bytes]:
    """Read the page's files (a fixed list: nothing else is ever served). Missing files are skipped."""
    d = page_dir or DEFAULT_PAGE_DIR
    out: dict[str, bytes] = {}
    for name in STATIC_FILES:
        p = d / name
        if p.is_file():
            out[name] = p.read_bytes()
    return out


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    st = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
        ]
    )
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(st.value, st.phrase, headers, body)


def text_response(status: int, text: str, extra: dict[str, str] | None = None) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8", extra)


def json_response(status: int, obj: Any) -> Response:
    return response(status, json.dumps(obj, default=str).encode(), "application/json")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    path: str
    query: dict[str, list[str]]
    is_upgrade: bool


def parse_request(request: Request) -> RequestInfo:
    parts = urlsplit(request.path)
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    return RequestInfo(parts.path or "/", parse_qs(parts.query, max_num_fields=16), upgrade)


class Gatekeeper:
    """Bearer-token and Origin checks (both in constant shape: no information about the token leaks)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self._token = cfg.auth_token.encode() if cfg.auth_token else None
        self._origins = None if cfg.allowed_origins is None else {o.rstrip("/") for o in cfg.allowed_origins}

    @property
    def same_origin_only(self) -> bool:
        return self._origins is None

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def authorized(self, request: Request, info: RequestInfo) -> bool:
        if self._token is None:
            return True
        given: str | None = None
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif info.query.get("token"):
            given = info.query["token"][0]
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def origin_allowed(self, request: Request) -> bool:
        """No Origin header (a non-browser client): allowed. Otherwise the configured list, or by default the
        same host and port the request was sent to."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.rstrip("/")
        if self._origins is not None:
            return "*" in self._origins or origin in self._origins
        host = request.headers.get("Host", "")
        o = urlsplit(origin)
        return bool(host) and o.scheme in ("http", "https") and o.netloc.lower() == host.lower()


class HttpRoutes:
    """The `process_request` callable: None lets a WebSocket handshake go on; a Response answers plain HTTP."""

    def __init__(
        self,
        cfg: ServerConfig,
        *,
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], tuple[bytes, str]],
        static: dict[str, bytes],
        api: Callable[[Request, RequestInfo], Response | Awaitable[Response]] | None = None,
    ) -> None:
        self.gate = Gatekeeper(cfg)
        self._api = api  # /api/… (camera pictures: image_routes.py)
        self._health = health
        self._metrics = metrics
        self._static = static

    def __call__(self, connection: object, request: Request) -> Response | Awaitable[Response] | None:
        info = parse_request(request)
        if request.method != "GET":
            return text_response(405, f"method {request.method} not allowed\n", {"Allow": "GET"})
        if info.is_upgrade:
            return self._handshake(request, info)
        path = info.path
        if path.startswith("/api/") and self._api is not None:
            return self._api(request, info)
        if path == "/healthz":
            return self._healthz(request, info)
        if path == "/metrics":
            if not self.gate.authorized(request, info):
                return self._unauthorized()
            body, ctype = self._metrics()
            return response(200, body, ctype)
        name = "index.html" if path == "/" else path.lstrip("/")
        if name in STATIC_FILES:
            if name not in self._static:
                return text_response(404, f"{name} is not installed\n")
            extra = {"Content-Security-Policy": _PAGE_CSP, "Referrer-Policy": "no-referrer"}
            return response(200, self._static[name], STATIC_FILES[name], extra)
        return text_response(404, "not found\n")

    def _handshake(self, request: Request, info: RequestInfo) -> Response | None:
        if info.path not in WS_PATHS:
            return text_response(404, f"no WebSocket endpoint at {info.path} (use /)\n")
        if not self.gate.origin_allowed(request):
            log.warning("refused WebSocket from origin %r", request.headers.get("Origin"))
            return text_response(403, "origin not allowed\n")
        if not self.gate.authorized(request, info):
            return self._unauthorized()
        return None

    def _healthz(self, request: Request, info: RequestInfo) -> Response:
        try:
            body = self._health()
        except Exception as e:  # the health endpoint must answer even when the service is broken
            log.exception("health() failed")
            return json_response(503, {"status": "error", "error": str(e)})
        status = body.get("status")
        code = 200 if status in _HEALTHY else 503
        if not self.gate.authorized(request, info):
            # Camera reasons may hold source URLs: without the token, only the status.
            body = {"status": status}
        return json_response(code, body)

    @staticmethod
    def _unauthorized() -> Response:
        return text_response(401, "missing or wrong bearer token\n", {"WWW-Authenticate": 'Bearer realm="livesight"'})
