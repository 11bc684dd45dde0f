"""The gateway's `/healthz` and `/metrics`, sized for thousands of cameras: built in O(cameras), never per request.

    health = HealthCache(build=server.build_health, versions=lambda: (directory.version, hub.version), …)
    routes = health.routes()            # GET /healthz, GET /metrics (the token rule for /metrics: server.py)

- `/healthz`: the body is rebuilt (and encoded once) only when the directory or a link changed, and at most every
  `every_s`; a request is answered with those bytes and two fields of its own spliced in front (`uptime_s`,
  `clients`). Without the token only `{"status": …}`, as on a daemon; 200 when ok or degraded, 503 otherwise.
- `/metrics`: rendered at most every `metrics_every_s`, in a worker thread (a 5,000-camera scrape takes tens of ms
  of Python: in a thread the event loop keeps its turns), one render at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from livesight.protocols.web.access import request_is_authorized
from livesight.protocols.web.responses import json_response, response

log = logging.getLogger(__name__)

_HEALTHY = ("ok", "degraded")


@dataclass(frozen=True, slots=True)
class _Built:
    versions: tuple[int, ...]
    at: float  # monotonic
    body: dict[str, Any]
    rest: bytes  # the body's JSON without its opening brace


class HealthCache:
    def __init__(
        self,
        *,
        build: Callable[[], dict[str, Any]],
        versions: Callable[[], tuple[int, ...]],
        clients: Callable[[], int],
        render_metrics: Callable[[], bytes],
        content_type: str,
        every_s: float = 0.5,
        metrics_every_s: float = 1.0,
    ) -> None:
        self._build = build
        self._versions = versions
        self._clients = clients
        self._render = render_metrics
        self._content_type = content_type
        self.every_s = every_s
        self.metrics_every_s = metrics_every_s
        self.started = time.time()
        self.builds = 0
        self._built: _Built | None = None
        self._metrics: tuple[float, bytes] | None = None
        self._rendering = asyncio.Lock()

    def _current(self) -> _Built:
        now = time.monotonic()
        versions = self._versions()
        built = self._built
        if built is None or (built.versions != versions and now - built.at >= self.every_s):
            body = self._build()
            rest = json.dumps(body, default=str).encode()[1:]
            built = self._built = _Built(versions, now, body, rest)
            self.builds += 1
        return built

    def body(self) -> dict[str, Any]:
        """The health as a dict (for tests and callers on the loop): the cached body with the volatile fields."""
        return {**self._current().body, **self._volatile()}

    def last_body(self) -> dict[str, Any]:
        """The body last built, never rebuilt here: what the metrics collector reads from its thread."""
        built = self._built
        return built.body if built is not None else {}

    def _volatile(self) -> dict[str, Any]:
        return {"uptime_s": round(time.time() - self.started, 1), "clients": self._clients()}

    def routes(self) -> list[BaseRoute]:
        return [Route("/healthz", self.healthz), Route("/metrics", self.metrics)]

    async def healthz(self, request: Request) -> Response:
        built = self._current()
        status = built.body.get("status")
        code = 200 if status in _HEALTHY else 503
        if not request_is_authorized(request.scope):
            return json_response(code, {"status": status})  # camera reasons name nodes and addresses
        head = json.dumps(self._volatile())[:-1].encode()  # '{"uptime_s": …, "clients": …'
        sep = b", " if built.rest != b"}" else b""
        return response(code, head + sep + built.rest, "application/json")

    async def metrics(self, request: Request) -> Response:
        async with self._rendering:
            now = time.monotonic()
            if self._metrics is None or now - self._metrics[0] >= self.metrics_every_s:
                self._current()  # the collector reads the cached health: refresh it here, on the loop
                self._metrics = (now, await asyncio.to_thread(self._render))
        return response(200, self._metrics[1], self._content_type)
