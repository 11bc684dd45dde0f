"""Camera pictures over HTTP:

    GET /api/cameras/<id>/latest.jpg[?overlay=1]   the latest sampled frame as the model saw it; with overlay=1 the
                                                   tokens DTD dropped are dimmed and the kept ones outlined.
                                                   ETag = the frame's number: If-None-Match → 304 (cheap polling)
    GET /api/cameras/<id>/scenes[?limit=N]         JSON: the latest scenes, newest first, with thumbnail URLs; with
                                                   a timeline, its entries, searchable (history/timeline_routes.py)
    GET /api/cameras/<id>/scenes/<n>.jpg           the first frame of scene n

Camera images are the most sensitive thing the daemon serves: the origin and bearer-token checks (server.py's access
rule for /api/) come first and a refused request gets no byte of any image. Browsers are told not to embed them in
other sites' pages (`Cross-Origin-Resource-Policy: same-origin`) unless `server.allowed_origins` lists other origins.
Encoding happens off the event loop (ImageSource); these handlers only await it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from livesight.protocols.contract.api import BusyError, ImageSource, UnknownCameraError
from livesight.protocols.web.access import query_params
from livesight.protocols.web.responses import json_response, response, text_response

PREFIX = "/api/"
PATH_PATTERN = re.compile(
    r"^/api/cameras/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/(latest\.jpg|scenes|scenes/([0-9]{1,9})\.jpg)$"
)
MAX_SCENES = 500


def thumbnail_url(camera: str, scene: int) -> str:
    return f"/api/cameras/{camera}/scenes/{scene}.jpg"


SceneList = Callable[[str, dict[str, str]], Awaitable[Response]]  # (camera, query) → the scene list's answer


class ImageRoutes:
    def __init__(self, images: ImageSource, *, same_origin_only: bool, scene_list: SceneList | None = None) -> None:
        self.images = images
        self.scene_list = scene_list  # the timeline's scene list (search, cursors); None: the event log's latest
        self._corp = "same-origin" if same_origin_only else "cross-origin"

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/{rest:path}", self.endpoint)]

    async def endpoint(self, request: Request) -> Response:
        m = PATH_PATTERN.match(request.url.path)
        if m is None:
            return text_response(404, "not found\n")
        camera, what, scene = m.group(1), m.group(2), m.group(3)
        query = query_params(request.scope)
        if what == "latest.jpg":
            overlay = query.get("overlay", "0") in ("1", "true", "yes")
            return await self._latest(request, camera, overlay)
        if what == "scenes":
            if self.scene_list is not None:
                return await self.scene_list(camera, query)
            return await self._scenes(camera, query.get("limit", "100"))
        return await self._scene(camera, int(scene))

    async def _latest(self, request: Request, camera: str, overlay: bool) -> Response:
        try:
            seq = self.images.latest_seq(camera)
            if seq is not None and request.headers.get("if-none-match") == _etag(seq, overlay):
                return response(304, b"", "image/jpeg", {"ETag": _etag(seq, overlay)})  # no encoding at all
            img = await self.images.latest_jpeg(camera, overlay=overlay)
        except UnknownCameraError:
            return text_response(404, f"unknown camera {camera}\n")
        except BusyError as e:
            return text_response(503, f"{e}\n", {"Retry-After": "1"})
        if img is None:
            return text_response(503, "no frame yet\n", {"Retry-After": "1"})
        etag = _etag(img.seq, overlay)
        extra = {
            "ETag": etag,
            "X-Frame-Seq": str(img.seq),
            "X-Frame-Pts": f"{img.pts:.3f}",
            "Cross-Origin-Resource-Policy": self._corp,
        }
        if request.headers.get("if-none-match") == etag:
            return response(304, b"", "image/jpeg", extra)
        return response(200, img.data, "image/jpeg", extra)

    async def _scenes(self, camera: str, limit_text: str) -> Response:
        # ASCII digits only: str.isdigit() is also true of "²", which int() refuses
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_SCENES:
            return text_response(400, f"limit must be 1..{MAX_SCENES}\n")
        try:
            rows = await self.images.scenes(camera, limit=int(limit_text))
        except UnknownCameraError:
            return text_response(404, f"unknown camera {camera}\n")
        out: list[dict[str, Any]] = []
        for r in rows:
            out.append(
                {
                    "scene": r["scene"],
                    "pts": r["pts"],
                    "wall_time": r["wall_time"],
                    "caption": r.get("caption"),
                    "thumbnail": thumbnail_url(camera, r["scene"]) if r.get("thumbnail") else None,
                }
            )
        return json_response(200, {"camera": camera, "scenes": out})

    async def _scene(self, camera: str, scene: int) -> Response:
        try:
            data = await self.images.scene_jpeg(camera, scene)
        except UnknownCameraError:
            return text_response(404, f"unknown camera {camera}\n")
        if data is None:
            return text_response(404, f"no thumbnail of scene {scene}\n")
        extra = {"Cross-Origin-Resource-Policy": self._corp, "Cache-Control": "private, max-age=3600"}
        return response(200, data, "image/jpeg", extra)


def _etag(seq: int, overlay: bool) -> str:
    return f'"{seq}-{int(overlay)}"'
