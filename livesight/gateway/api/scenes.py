"""The fleet's timeline through the gateway: search across every node, and every node's keyframes.

    GET /api/scenes?q=&camera=&from=&to=&limit=    every node is asked (at most FANOUT at once, each within
                                                   NODE_TIMEOUT_S); their rows are merged — with `q` best rank first,
                                                   then newest; else newest first — and `limit` is applied after the
                                                   merge. Each row names its `node`; its keyframe URLs are the
                                                   gateway's (`?node=`). A node that is down, unlinked or too slow is
                                                   named: `partial: true`, `missing: [node ids]` (200, never a 500).
                                                   A bad parameter: the node's 400 with its reason.
    GET /api/timeline/<id>/keyframes/<n>.jpg[?node=|?camera=]
                                                   the keyframe from the node that holds the entry: `node` names it
                                                   (the URLs this gateway hands out do), else the owner of `camera`,
                                                   else every linked node is asked (entry ids are unique: a ULID) and
                                                   the first picture found is served; none: 404

Nodes answer on `/fleet/api/…` (node_http.py). The access rule (token, Origin) is checked before anything here runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from livesight.gateway.api.node_http import NodeBadAnswer, NodeBusy, NodeHTTP, NodeUnreachable
from livesight.gateway.api.pictures import rewrite_rows
from livesight.protocols.web.access import query_params
from livesight.protocols.web.responses import json_response, response, text_response

FANOUT = 8  # nodes asked at once
NODE_TIMEOUT_S = 5.0  # a node's whole answer within this, else it is `missing`
MAX_LIMIT = 500
DEFAULT_LIMIT = 20
SEARCH_PARAMS = ("q", "camera", "from", "to")
KEYFRAME_PATH = re.compile(r"^/api/timeline/([A-Za-z0-9_]{1,64})/keyframes/([0-9]{1,2})\.jpg$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class FleetSceneCounters:
    searches: int = 0
    partial: int = 0  # searches answered without some node
    keyframes: int = 0  # keyframes relayed


@dataclass(frozen=True, slots=True)
class _NodeRows:
    node: str
    rows: list[dict[str, Any]] | None  # None: missing
    refusal: tuple[int, bytes] | None = None  # the node's 400 (a bad parameter)


def merge(rows: list[dict[str, Any]], *, ranked: bool, limit: int) -> list[dict[str, Any]]:
    """Rows of every node as one list: with a text query best rank first, then newest; else newest first."""

    def when(r: dict[str, Any]) -> float:
        t = r.get("wall_time")
        return float(t) if isinstance(t, int | float) else 0.0

    def rank(r: dict[str, Any]) -> float:
        v = r.get("rank")
        return float(v) if isinstance(v, int | float) else float("-inf")

    key = (lambda r: (rank(r), when(r))) if ranked else when
    return sorted(rows, key=key, reverse=True)[:limit]


def merged_reply(rows: list[dict[str, Any]], missing: list[str], *, ranked: bool, limit: int) -> dict[str, Any]:
    """The gateway's /api/scenes answer (docs/protocol.md)."""
    return {"scenes": merge(rows, ranked=ranked, limit=limit), "partial": bool(missing), "missing": missing}


class FleetScenes:
    def __init__(self, http: NodeHTTP, *, same_origin_only: bool) -> None:
        self.http = http
        self.directory = http.directory
        self._corp = "same-origin" if same_origin_only else "cross-origin"
        self.counters = FleetSceneCounters()

    # ---- /api/scenes ----------------------------------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        query = query_params(request.scope)
        limit_text = query.get("limit", str(DEFAULT_LIMIT))
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= MAX_LIMIT:
            return text_response(400, f"limit must be 1..{MAX_LIMIT}\n")
        limit = int(limit_text)
        params = {k: query[k] for k in SEARCH_PARAMS if k in query}
        params["limit"] = str(limit)  # each node's best `limit`: enough for the merged best `limit`
        self.counters.searches += 1
        slots = asyncio.Semaphore(FANOUT)
        nodes = self.directory.node_names()
        answers = await asyncio.gather(*(self._ask(n, params, slots) for n in nodes))
        refused = next((a.refusal for a in answers if a.refusal is not None), None)
        if refused is not None:  # a bad parameter: every node would say so
            return response(refused[0], refused[1], "text/plain; charset=utf-8")
        missing = sorted(a.node for a in answers if a.rows is None)
        rows = [r for a in answers if a.rows is not None for r in a.rows]
        if "camera" in params and not missing and not rows and not self._known(params["camera"]):
            return text_response(404, f"unknown camera {params['camera']}\n")
        if missing:
            self.counters.partial += 1
        return json_response(200, merged_reply(rows, missing, ranked=bool(params.get("q")), limit=limit))

    def _known(self, cameras: str) -> bool:
        return any(self.directory.known(c) for c in cameras.split(","))

    async def _ask(self, node: str, params: dict[str, str], slots: asyncio.Semaphore) -> _NodeRows:
        try:
            async with slots, asyncio.timeout(NODE_TIMEOUT_S):
                answer = await self.http.get(node, "/api/scenes", params)
        except (NodeUnreachable, NodeBusy, NodeBadAnswer, TimeoutError):
            return _NodeRows(node, None)
        if answer.status == 400:
            return _NodeRows(node, [], refusal=(400, answer.body))
        if answer.status == 404:  # it knows none of the cameras asked for: no rows from it
            return _NodeRows(node, [])
        if answer.status != 200:
            return _NodeRows(node, None)
        try:
            obj = json.loads(answer.body)
        except ValueError:
            return _NodeRows(node, None)
        rows = obj.get("scenes") if isinstance(obj, dict) else None
        if not isinstance(rows, list):
            return _NodeRows(node, None)
        rows = [r for r in rows if isinstance(r, dict)]
        rewrite_rows(rows, node)  # type: ignore[arg-type]
        for r in rows:
            r["node"] = node
        return _NodeRows(node, rows)

    # ---- /api/timeline/<id>/keyframes/<n>.jpg --------------------------------------------------------------

    async def keyframe(self, request: Request) -> Response:
        path = request.url.path
        if KEYFRAME_PATH.match(path) is None:
            return text_response(404, "not found\n")
        query = query_params(request.scope)
        node = query.get("node")
        camera = query.get("camera")
        if node is not None:
            if not _NODE_NAME.match(node) or node not in self.directory.nodes:
                return text_response(404, f"unknown node {node}\n")
            candidates = [node]
        elif camera is not None and self.directory.known(camera) and self.directory.owner(camera) is not None:
            candidates = [self.directory.owner(camera)]  # type: ignore[list-item]
        else:
            candidates = self.http.linked()
        unreachable = []
        for start in range(0, len(candidates), FANOUT):  # at most FANOUT nodes asked at once
            batch = candidates[start : start + FANOUT]
            got = await asyncio.gather(*(self._keyframe_from(n, path) for n in batch))
            for n, answer in zip(batch, got, strict=True):
                if isinstance(answer, Response):
                    self.counters.keyframes += 1
                    return answer
                if answer:
                    unreachable.append(n)
        if unreachable and len(candidates) == 1:
            return text_response(
                503, f"camera_unavailable: node {unreachable[0]} is unavailable\n", {"Retry-After": "5"}
            )
        return text_response(404, "no such keyframe\n")

    async def _keyframe_from(self, node: str, path: str) -> Response | bool:
        """The node's picture (a Response), else whether the node could not be asked (True) or had none (False)."""
        try:
            async with asyncio.timeout(NODE_TIMEOUT_S):
                answer = await self.http.get(node, path, {})
        except (NodeUnreachable, NodeBusy, NodeBadAnswer, TimeoutError):
            return True
        if answer.status != 200:
            return False
        extra = {"Cross-Origin-Resource-Policy": self._corp, "Cache-Control": "private, max-age=3600"}
        return response(200, answer.body, answer.headers.get("content-type", "image/jpeg"), extra)
