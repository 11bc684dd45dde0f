"""A summary of a period of a camera's timeline over HTTP:

    GET /api/cameras/<id>/summary[?from=&to=&stream=false]

`from`/`to`: ISO-8601 with a zone or epoch seconds (times.py); defaults: `to` now, `from` an hour before `to`. The
answer streams as Server-Sent Events (`text/event-stream`): `event: delta` `{"text"}` as the summary is generated,
then one `event: done` `{"response_id", "camera", "from", "to", "status", "text", "citations", "cached", "entries"}`
(a failed generation: status `failed` with `error`, `code`). While nothing is said for KEEPALIVE_S a comment line
(`: keep-alive`) keeps proxies (and the gateway) from timing out. With `stream=false` the done event's object is the
JSON answer (200; a failed generation 503).

Refused before anything is generated: a bad parameter 400 (naming it), an unknown camera 404, a node that keeps no
timeline 400. Too many questions waiting: the summary ends failed with code `busy` (JSON: 503). The access rule
(token, Origin) is protocols/web/server.py's /api/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from livesight.protocols.contract.api import (
    BusyError,
    ServiceError,
    SummaryEnd,
    SummaryEvent,
    SummarySource,
    UnknownCameraError,
)
from livesight.protocols.web.access import query_params
from livesight.protocols.web.history.times import TimeParamError, parse_time
from livesight.protocols.web.responses import json_response, text_response
from livesight.types import ResponseDelta, ResponseStatus

KEEPALIVE_S = 5.0
DEFAULT_WINDOW_S = 3600.0
MAX_WINDOW_S = 31 * 86400.0  # a month at most in one summary


async def _next(events: AsyncIterator[SummaryEvent]) -> SummaryEvent:
    return await anext(events)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def done_body(end: SummaryEnd) -> dict[str, Any]:
    d = end.done
    body: dict[str, Any] = {
        "response_id": d.response_id,
        "camera": end.camera,
        "from": end.start,
        "to": end.end,
        "status": d.status.value,
        "text": d.text,
        "citations": [c.as_dict() for c in d.citations],
        "cached": end.cached,
        "entries": end.entries,
    }
    if d.status is ResponseStatus.FAILED:
        body["error"] = d.error
        body["code"] = d.code
    return body


class SummaryRoutes:
    def __init__(self, source: SummarySource) -> None:
        self.source = source

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/cameras/{camera}/summary", self.endpoint)]

    async def endpoint(self, request: Request) -> Response:
        camera = request.path_params["camera"]
        query = query_params(request.scope)
        try:
            end = parse_time("to", query["to"]) if "to" in query else time.time()
            start = parse_time("from", query["from"]) if "from" in query else end - DEFAULT_WINDOW_S
        except TimeParamError as e:
            return text_response(400, f"{e}\n")
        if not end > start:
            return text_response(400, "'to' must be after 'from'\n")
        if end - start > MAX_WINDOW_S:
            return text_response(400, f"the period (from … to) is at most {MAX_WINDOW_S / 86400:.0f} days\n")
        stream = query.get("stream", "true")
        if stream not in ("true", "false", "1", "0", "yes", "no"):
            return text_response(400, "stream must be true or false\n")
        events = self.source.summary(camera=camera, start=start, end=end)
        try:
            first = await anext(events)  # the refusals come here, before any byte of the answer
        except UnknownCameraError:
            return text_response(404, f"unknown camera {camera}\n")
        except BusyError as e:
            return text_response(503, f"busy: {e.message}\n", {"Retry-After": "1"})
        except ServiceError as e:
            return text_response(400, f"{e.message}\n")
        if stream in ("false", "0", "no"):
            return await self._whole(first, events)
        return StreamingResponse(
            self._sse(first, events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Accel-Buffering": "no"},
        )

    @staticmethod
    async def _whole(first: SummaryEvent, events: AsyncIterator[SummaryEvent]) -> Response:
        try:
            ev = first
            while not isinstance(ev, SummaryEnd):
                ev = await anext(events)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        body = done_body(ev)
        return json_response(503 if ev.done.status is ResponseStatus.FAILED else 200, body)

    @staticmethod
    async def _sse(first: SummaryEvent, events: AsyncIterator[SummaryEvent]) -> AsyncIterator[bytes]:
        pending: asyncio.Task[SummaryEvent] | None = None
        try:
            ev: SummaryEvent | None = first
            while True:
                if isinstance(ev, ResponseDelta):
                    yield sse("delta", {"text": ev.text})
                elif isinstance(ev, SummaryEnd):
                    yield sse("done", done_body(ev))
                    return
                if pending is None:
                    pending = asyncio.get_running_loop().create_task(_next(events), name="summary:next")
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    ev = None
                    yield b": keep-alive\n\n"
                    continue
                ev, pending = pending.result(), None
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await events.aclose()  # type: ignore[attr-defined]
