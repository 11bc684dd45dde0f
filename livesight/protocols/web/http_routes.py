"""The plain pages of the port: `GET /` (chat page) and its assets, `GET /healthz` (JSON; 200 when ok/degraded, 503
otherwise; without the token only the status), `GET /metrics` (Prometheus text; the token rule is in server.py's
access rules). Cheap and synchronous: they run on the event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from livesight.errors import contain
from livesight.protocols.web.access import request_is_authorized
from livesight.protocols.web.responses import json_response, response, text_response

log = logging.getLogger(__name__)

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


def page_routes(
    *, health: Callable[[], dict[str, Any]], metrics: Callable[[], tuple[bytes, str]], static: dict[str, bytes]
) -> list[BaseRoute]:
    """Routes for /healthz, /metrics, / and the page's assets."""

    async def healthz(request: Request) -> Response:
        try:
            body = health()
        except Exception as e:  # the health endpoint must answer even when the service is broken
            contain("web.healthz", e, log, "/healthz")
            return json_response(503, {"status": "error", "error": str(e)})
        status = body.get("status")
        code = 200 if status in _HEALTHY else 503
        if not request_is_authorized(request.scope):
            body = {"status": status}  # camera reasons may hold source URLs: without the token, only the status
        return json_response(code, body)

    async def prometheus(request: Request) -> Response:
        body, ctype = metrics()
        return response(200, body, ctype)

    async def asset(request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        if name not in STATIC_FILES:
            return text_response(404, "not found\n")
        if name not in static:
            return text_response(404, f"{name} is not installed\n")
        extra = {"Content-Security-Policy": _PAGE_CSP, "Referrer-Policy": "no-referrer"}
        return response(200, static[name], STATIC_FILES[name], extra)

    return [
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        Route("/", asset),
        Route("/{name:str}", asset),
    ]


async def not_found(request: Request, exc: Exception) -> Response:
    """Any other path (Starlette's 404 and 405, reshaped as the port's plain answers)."""
    return text_response(404, "not found\n")
