"""Camera pictures, scenes and summaries through the gateway: the daemon's `/api/cameras/…` routes
(protocols/web/image_routes.py, protocols/web/history/) for every camera of the fleet, answered by the camera's node.

    GET /api/cameras/<id>/latest.jpg[?overlay=1]   the node's bytes, ETag / If-None-Match → 304 as on the node
    GET /api/cameras/<id>/scenes[?q=&from=&to=&limit=&cursor=]
                                                   the node's JSON; keyframe URLs name the node (`?node=`) so the
                                                   gateway serves them (scenes.py); thumbnails are camera paths
    GET /api/cameras/<id>/scenes/<n>.jpg
    GET /api/cameras/<id>/summary[?from=&to=&stream=]
                                                   the node's Server-Sent Events, relayed as they come (or its JSON)

The request goes to the node's `/fleet/api/…` with the fleet's credential (node_http.py: bounded connections, time
and size). A camera whose node is not connected gets 503 with `camera_unavailable` (text/plain, the code first, then
why; `Retry-After: 5`) at once, as on every other surface of the gateway; an unknown camera 404, as on a node. The
access rule (token, Origin) is the daemon's, checked before anything here runs.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from livesight.gateway.api.node_http import NodeBadAnswer, NodeBusy, NodeHTTP, NodeUnreachable
from livesight.protocols.web.access import query_params
from livesight.protocols.web.responses import response, text_response

CAMERA_PATH = re.compile(
    r"^/api/cameras/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/(latest\.jpg|scenes|scenes/([0-9]{1,9})\.jpg|summary)$"
)
# the parameters each route reads (nothing else is forwarded)
PARAMS = {
    "latest.jpg": ("overlay",),
    "scenes": ("q", "from", "to", "limit", "cursor"),
    "summary": ("from", "to", "stream"),
}
_PASSED = ("content-type", "etag", "x-frame-seq", "x-frame-pts", "cache-control", "retry-after")


@dataclass
class PictureCounters:
    proxied: int = 0  # answers relayed from a node (any status)
    unavailable: int = 0  # 503 camera_unavailable: the node was not connected or did not answer
    refused: int = 0  # 502 (bad answer) or 503 busy


def with_node(url: object, node: str) -> object:
    """A node's keyframe URL (a path) made the gateway's: `?node=` names the node that holds it."""
    if isinstance(url, str) and url.startswith("/api/timeline/") and "?" not in url:
        return f"{url}?node={node}"
    return url


def rewrite_rows(rows: list[object], node: str) -> None:
    """Scene rows of a node (JSON objects), in place: their keyframe URLs (`keyframes`, and `thumbnail` when it is
    one) point at the gateway, naming the node."""
    for row in rows:
        if not isinstance(row, dict):
            continue
        if isinstance(row.get("keyframes"), list):
            row["keyframes"] = [with_node(u, node) for u in row["keyframes"]]
        if "thumbnail" in row:
            row["thumbnail"] = with_node(row["thumbnail"], node)


class PictureProxy:
    def __init__(self, http: NodeHTTP, *, same_origin_only: bool) -> None:
        self.http = http
        self.directory = http.directory
        self.hub = http.hub
        self._corp = "same-origin" if same_origin_only else "cross-origin"
        self.counters = PictureCounters()

    async def endpoint(self, request: Request) -> Response:
        path = request.url.path
        m = CAMERA_PATH.match(path)
        if m is None:
            return text_response(404, "not found\n")
        camera, what = m.group(1), m.group(2)
        if not self.directory.known(camera):
            return text_response(404, f"unknown camera {camera}\n")
        node = self.directory.owner(camera)
        if node is None:
            return self.unavailable(camera, self.hub.unavailable_reason(node))
        query = query_params(request.scope)
        params = {k: query[k] for k in PARAMS.get(what, ()) if k in query}
        if what == "summary" and query.get("stream", "true") not in ("0", "false", "no"):
            return await self._stream(node, camera, path, params)
        headers = {}
        if (inm := request.headers.get("if-none-match")) is not None:
            headers["If-None-Match"] = inm
        try:
            answer = await self.http.get(node, path, params, headers)
        except NodeUnreachable as e:
            return self.unavailable(camera, str(e))
        except NodeBusy as e:
            self.counters.refused += 1
            return text_response(503, f"busy: {e}\n", {"Retry-After": "1"})
        except NodeBadAnswer as e:
            self.counters.refused += 1
            return text_response(502, f"{e}\n")
        self.counters.proxied += 1
        got = answer.headers
        body = answer.body
        if what == "scenes" and answer.status == 200:
            body = self._scenes_body(body, node)
        extra = {k: got[k] for k in _PASSED if k in got and k != "content-type"}
        if "cross-origin-resource-policy" in got:
            extra["Cross-Origin-Resource-Policy"] = self._corp  # the gateway's own origin rule, not the node's
        ctype = got.get("content-type", "application/octet-stream")
        return response(answer.status, body, ctype, extra)

    @staticmethod
    def _scenes_body(body: bytes, node: str) -> bytes:
        try:
            obj = json.loads(body)
        except ValueError:
            return body
        if isinstance(obj, dict) and isinstance(obj.get("scenes"), list):
            rewrite_rows(obj["scenes"], node)
        return json.dumps(obj).encode()

    async def _stream(self, node: str, camera: str, path: str, params: dict[str, str]) -> Response:
        """The node's Server-Sent Events, relayed chunk by chunk (each within the node client's read timeout)."""
        stack = contextlib.AsyncExitStack()
        try:
            status, got, chunks = await stack.enter_async_context(self.http.stream(node, path, params))
        except NodeUnreachable as e:
            await stack.aclose()
            return self.unavailable(camera, str(e))
        except NodeBusy as e:
            await stack.aclose()
            self.counters.refused += 1
            return text_response(503, f"busy: {e}\n", {"Retry-After": "1"})
        self.counters.proxied += 1

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await stack.aclose()

        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"}
        ctype = got.get("content-type", "text/event-stream")
        # the background task closes the node's stream too when the client left before the first chunk
        return StreamingResponse(
            body(), status_code=status, media_type=ctype, headers=headers, background=BackgroundTask(stack.aclose)
        )

    def unavailable(self, camera: str, why: str) -> Response:
        self.counters.unavailable += 1
        return text_response(
            503, f"camera_unavailable: camera {camera!r} is unavailable: {why}\n", {"Retry-After": "5"}
        )
