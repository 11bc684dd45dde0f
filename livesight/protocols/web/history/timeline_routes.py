"""The searchable timeline over HTTP (docs/protocol.md, "Timeline"):

    GET /api/cameras/<id>/scenes?q=&from=&to=&limit=&cursor=   one camera's entries (image_routes.py hands it here)
    GET /api/scenes?q=&camera=&from=&to=&limit=&cursor=        every camera's (or those `camera` names)
    GET /api/timeline/<id>/keyframes/<n>.jpg                   an entry's n-th keyframe

Rows: today's scene fields (`scene`, `pts`, `wall_time`, `caption`, `thumbnail`) and the entry's `id`, `camera`,
`chunk`, `end_pts`, `end_wall_time`, `keyframes` (URLs), and with `q` its `rank` (higher is better); newest first
without `q`, best first with it; `next_cursor` (null on the last page). A bad parameter is 400 with its reason
(timeline_params.py), an unknown camera 404, a keyframe whose entry or file is gone 404; never a 500. The access
rule (token, Origin) is server.py's for /api/.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from livesight.protocols.contract.api import BusyError, InvalidRequestError, TimelineSource, UnknownCameraError
from livesight.protocols.web.access import query_params
from livesight.protocols.web.history.timeline_params import ParamError, timeline_query
from livesight.protocols.web.responses import json_response, response, text_response
from livesight.types import TimelineHit, TimelineQuery, keyframe_url

KEYFRAME_PATH = re.compile(r"^/api/timeline/([A-Za-z0-9_]{1,64})/keyframes/([0-9]{1,2})\.jpg$")
CAMERA_DEFAULT_LIMIT = 100  # /api/cameras/<id>/scenes: as before the timeline
DEFAULT_LIMIT = 20


def thumbnail_url(camera: str, scene: int) -> str:
    return f"/api/cameras/{camera}/scenes/{scene}.jpg"


def scene_row(hit: TimelineHit, thumbnails: set[tuple[str, int]]) -> dict[str, Any]:
    """An entry as a scene-list row. `thumbnail`: the scene's stored first frame when there is one (as before the
    timeline), else the entry's first keyframe, else null."""
    e = hit.entry
    keyframes = [keyframe_url(e.id, i) for i in range(len(e.keyframes))]
    if e.chunk == 0 and (e.camera, e.scene) in thumbnails:
        thumb: str | None = thumbnail_url(e.camera, e.scene)
    else:
        thumb = keyframes[0] if keyframes else None
    row: dict[str, Any] = {
        "scene": e.scene,
        "pts": e.pts,
        "wall_time": e.wall_time,
        "caption": e.caption,
        "thumbnail": thumb,
        "id": e.id,
        "camera": e.camera,
        "chunk": e.chunk,
        "end_pts": e.end_pts,
        "end_wall_time": e.end_wall_time,
        "keyframes": keyframes,
    }
    if hit.rank is not None:
        row["rank"] = hit.rank
    return row


class TimelineRoutes:
    def __init__(self, timeline: TimelineSource, *, same_origin_only: bool) -> None:
        self.timeline = timeline
        self._corp = "same-origin" if same_origin_only else "cross-origin"

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/scenes", self.scenes), Route("/api/timeline/{rest:path}", self.keyframe)]

    async def scenes(self, request: Request) -> Response:
        try:
            query = timeline_query(query_params(request.scope), default_limit=DEFAULT_LIMIT)
        except ParamError as e:
            return text_response(400, f"{e}\n")
        return await self._answer(query, {})

    async def camera_scenes(self, camera: str, params: dict[str, str]) -> Response:
        try:
            query = timeline_query(params, camera=camera, default_limit=CAMERA_DEFAULT_LIMIT)
        except ParamError as e:
            return text_response(400, f"{e}\n")
        return await self._answer(query, {"camera": camera})

    async def keyframe(self, request: Request) -> Response:
        m = KEYFRAME_PATH.match(request.url.path)
        if m is None:
            return text_response(404, "not found\n")
        try:
            data = await self.timeline.keyframe(m.group(1), int(m.group(2)))
        except BusyError as e:
            return text_response(503, f"{e}\n", {"Retry-After": "1"})
        if data is None:
            return text_response(404, "no such keyframe\n")
        extra = {"Cross-Origin-Resource-Policy": self._corp, "Cache-Control": "private, max-age=3600"}
        return response(200, data, "image/jpeg", extra)

    async def _answer(self, query: TimelineQuery, head: dict[str, Any]) -> Response:
        try:
            page = await self.timeline.search(query)
            keys = [(h.entry.camera, h.entry.scene) for h in page.hits if h.entry.chunk == 0]
            thumbs = await self.timeline.scene_thumbnails(keys)
        except UnknownCameraError as e:
            return text_response(404, f"{e.message}\n")
        except InvalidRequestError as e:
            return text_response(400, f"{e.message}\n")
        except BusyError as e:
            return text_response(503, f"{e.message}\n", {"Retry-After": "1"})
        rows = [scene_row(h, thumbs) for h in page.hits]
        return json_response(200, {**head, "scenes": rows, "next_cursor": page.next_cursor})
