"""The daemon (echo backend, a real decoded stream) keeps a timeline beside its event log and serves it: the current
scene is an open entry from the start, a caption makes it findable, a stored keyframe is served, and with
`memory.timeline.enabled: false` the scene list is the event log's as before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from livesight.config import parse_config
from livesight.daemon.app import App, run_app
from livesight.ids import new_id
from livesight.types import Keyframe, TimelineEntry
from tests.helpers import http_get
from tests.timeline.conftest import jpeg


@asynccontextmanager
async def daemon(db: Path, **timeline: Any) -> AsyncIterator[tuple[App, int]]:
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo", "sample_fps": 4}],
            "model": {"backend": "echo", "max_new_tokens": 8},
            "dtd": {"mode": "pixel"},
            "memory": {"token_budget": 1024, "database": str(db), "timeline": timeline},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0},
        },
        origin="test",
    )
    app = App(cfg)
    runner = asyncio.create_task(run_app(app), name="app")
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        yield app, handles.port
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)


async def scenes(port: int, path: str) -> dict[str, Any]:
    status, _, body = await http_get(port, path)
    assert status == 200, body
    return json.loads(body)


async def test_the_daemon_serves_its_timeline(tmp_path: Path) -> None:
    db = tmp_path / "ev.sqlite"
    async with daemon(db) as (app, port):
        assert app.event_log is not None and app.timeline is not None
        await asyncio.to_thread(app.event_log.flush)
        rows = (await scenes(port, "/api/cameras/cam/scenes"))["scenes"]
        assert rows[0]["scene"] == 1 and rows[0]["end_wall_time"] is None and rows[0]["id"].startswith("tl_")
        app.event_log.caption("cam", 1, "a purple giraffe walks past the gate")
        e = TimelineEntry(
            id=new_id("tl_"), camera="cam", scene=0, chunk=0, pts=0.0, wall_time=time.time() - 3600,
            end_pts=60.0, end_wall_time=time.time() - 3540, caption="an orange forklift",
            keyframes=(Keyframe("first", 0.0, time.time() - 3600),),
        )  # fmt: skip
        await asyncio.to_thread(app.timeline.add_entry, e, [jpeg(123)])
        await asyncio.to_thread(app.timeline.flush)
        found = (await scenes(port, "/api/scenes?q=giraffe"))["scenes"]
        assert [(r["camera"], r["scene"]) for r in found] == [("cam", 1)] and found[0]["rank"] > 0
        found = (await scenes(port, "/api/scenes?q=forklift&camera=cam"))["scenes"]
        assert found[0]["id"] == e.id and found[0]["keyframes"] == [f"/api/timeline/{e.id}/keyframes/0.jpg"]
        status, hdrs, body = await http_get(port, found[0]["keyframes"][0])
        assert status == 200 and body == jpeg(123) and hdrs["content-type"] == "image/jpeg"
        assert (await http_get(port, "/api/scenes?q=the"))[0] == 400
        assert (await http_get(port, "/api/scenes?camera=nope"))[0] == 404
    async with daemon(db) as (app, port):  # a restart: the entries are there, and searchable
        found = (await scenes(port, "/api/scenes?q=forklift"))["scenes"]
        assert [r["id"] for r in found] == [e.id]


async def test_without_a_timeline_the_scene_list_is_the_event_logs(tmp_path: Path) -> None:
    async with daemon(tmp_path / "ev.sqlite", enabled=False) as (app, port):
        assert app.timeline is None
        await asyncio.to_thread(app.event_log.flush)  # type: ignore[union-attr]
        body = await scenes(port, "/api/cameras/cam/scenes")
        assert set(body) == {"camera", "scenes"} and body["scenes"][0]["scene"] == 1
        assert set(body["scenes"][0]) == {"scene", "pts", "wall_time", "caption", "thumbnail"}
        assert (await http_get(port, "/api/scenes"))[0] == 404
        assert not (tmp_path / "ev.keyframes").exists()
