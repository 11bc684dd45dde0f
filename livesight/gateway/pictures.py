"""Camera pictures through the gateway: the daemon's `/api/cameras/…` routes (protocols/web/image_routes.py) for every
camera of the fleet, answered by the camera's node.

    GET /api/cameras/<id>/latest.jpg[?overlay=1]   the node's bytes, ETag / If-None-Match → 304 as on the node
    GET /api/cameras/<id>/scenes[?limit=N]         the node's JSON (thumbnail URLs are paths: they point at the gateway)
    GET /api/cameras/<id>/scenes/<n>.jpg

The request goes to the node's `/fleet/api/…` (protocols/web/fleet_link.py) with the fleet's credential — never the
client's token, which is not forwarded, nor any header or parameter the node's routes do not read — through one httpx
client holding at most PER_NODE keep-alive connections per node (so a page polling the live view does not open a
connection per frame). Bounded: the node's answer must start within CONNECT_S + READ_S and fit in MAX_BODY bytes (else
502); at most PER_NODE requests per node at once, the rest wait QUEUE_S at most (else 503 `busy`).

A camera whose node is not connected gets 503 with `camera_unavailable` (text/plain, the code first, then why;
`Retry-After: 5`) at once, as on every other surface of the gateway; an unknown camera 404, as on a node. The access
rule (token, Origin) is the daemon's, checked before anything here runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx2 as httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from livesight.gateway.hub import UpstreamHub
from livesight.protocols.web.access import query_params
from livesight.protocols.web.image_routes import PATH_PATTERN
from livesight.protocols.web.responses import response, text_response

log = logging.getLogger(__name__)

PER_NODE = 4  # connections (and requests at once) per node
QUEUE_S = 5.0  # a request waits this long at most for one of them
CONNECT_S = 3.0
READ_S = 10.0
MAX_BODY = 8 * 2**20  # a picture or a scenes list larger than this is refused (502)
_PASSED = ("content-type", "etag", "x-frame-seq", "x-frame-pts", "cache-control", "retry-after")


@dataclass
class PictureCounters:
    proxied: int = 0  # answers relayed from a node (any status)
    unavailable: int = 0  # 503 camera_unavailable: the node was not connected or did not answer
    refused: int = 0  # 502 (bad answer) or 503 busy


def http_base(node_url: str) -> str:
    """ws://host:port/prefix → http://host:port/prefix (wss → https)."""
    if node_url.startswith("wss://"):
        return "https://" + node_url[len("wss://") :].rstrip("/")
    return "http://" + node_url.removeprefix("ws://").rstrip("/")


class PictureProxy:
    def __init__(self, hub: UpstreamHub, *, token: str | None, same_origin_only: bool) -> None:
        self.hub = hub
        self.directory = hub.directory
        self.token = token
        self._corp = "same-origin" if same_origin_only else "cross-origin"
        self.counters = PictureCounters()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_S, connect=CONNECT_S),
            limits=httpx.Limits(
                max_connections=PER_NODE * max(1, len(self.directory.nodes)) + PER_NODE,
                max_keepalive_connections=PER_NODE * max(1, len(self.directory.nodes)),
                keepalive_expiry=4.0,  # below the node's keep-alive (uvicorn's 5 s): never reuse a closing one
            ),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between the gateway and its nodes
        )

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/{rest:path}", self.endpoint)]

    async def close(self) -> None:
        await self._client.aclose()

    async def endpoint(self, request: Request) -> Response:
        path = request.url.path
        m = PATH_PATTERN.match(path)
        if m is None:
            return text_response(404, "not found\n")
        camera, what = m.group(1), m.group(2)
        if not self.directory.known(camera):
            return text_response(404, f"unknown camera {camera}\n")
        node = self.directory.owner(camera)
        link = self.hub.links.get(node) if node is not None else None
        url = self.directory.url(node) if node is not None else None
        if link is None or not link.connected or url is None or node is None:
            return self._unavailable(camera, self.hub.unavailable_reason(node))
        query = query_params(request.scope)
        params = {}
        if what == "latest.jpg" and "overlay" in query:
            params["overlay"] = query["overlay"]
        elif what == "scenes" and "limit" in query:
            params["limit"] = query["limit"]
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if (inm := request.headers.get("if-none-match")) is not None:
            headers["If-None-Match"] = inm
        return await self._fetch(node, camera, http_base(url) + "/fleet" + path, params, headers)

    async def _fetch(
        self, node: str, camera: str, url: str, params: dict[str, str], headers: dict[str, str]
    ) -> Response:
        slot = self._slots.setdefault(node, asyncio.Semaphore(PER_NODE))
        try:
            async with asyncio.timeout(QUEUE_S):
                await slot.acquire()
        except TimeoutError:
            self.counters.refused += 1
            return text_response(503, f"busy: too many picture requests for node {node}\n", {"Retry-After": "1"})
        try:
            async with self._client.stream("GET", url, params=params, headers=headers) as r:
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        self.counters.refused += 1
                        return text_response(502, f"node {node} answered more than {MAX_BODY} bytes\n")
                status, got = r.status_code, r.headers
        except httpx.HTTPError as e:
            log.info("gateway: picture of %s from node %s failed: %s", camera, node, str(e) or type(e).__name__)
            return self._unavailable(camera, f"node {node} did not answer ({type(e).__name__})")
        finally:
            slot.release()
        self.counters.proxied += 1
        extra = {k: got[k] for k in _PASSED if k in got and k != "content-type"}
        if "cross-origin-resource-policy" in got:
            extra["Cross-Origin-Resource-Policy"] = self._corp  # the gateway's own origin rule, not the node's
        ctype = got.get("content-type", "application/octet-stream")
        return response(status, bytes(body), ctype, extra)

    def _unavailable(self, camera: str, why: str) -> Response:
        self.counters.unavailable += 1
        return text_response(
            503, f"camera_unavailable: camera {camera!r} is unavailable: {why}\n", {"Retry-After": "5"}
        )
