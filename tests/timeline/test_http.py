"""The timeline's HTTP endpoints on a real server (port 0) over a real store (SQLite file, JPEG files):
/api/cameras/<id>/scenes extended (today's fields kept), /api/scenes across cameras, keyframes; every bad parameter
400 with its reason, unknown camera 404, a keyframe whose file is gone 404, nothing without the token."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from livesight.config import ServerConfig
from livesight.daemon.frame_slots import FrameSlots
from livesight.daemon.images import Images, ThumbnailStore
from livesight.daemon.timeline.face import TimelineFace
from livesight.ids import new_id
from livesight.protocols.web.server import WebServer
from livesight.timeline.store import TimelineStore
from livesight.types import Keyframe, SceneChange, TimelineEntry
from tests.helpers import http_get
from tests.pipeline import pipeline
from tests.timeline.conftest import close_store, jpeg, open_store

TOKEN = "timeline-token"
OK = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_796_626_800.0  # 2026-12-07T07:00:00Z


@dataclass
class Node:
    port: int
    store: TimelineStore
    entries: dict[str, TimelineEntry]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    store = open_store(tmp_path / "ev.sqlite")
    thumbs = ThumbnailStore(tmp_path / "ev.thumbnails", 100)
    images = Images(["door", "yard"], FrameSlots(), store=thumbs, event_log=store.log)
    await images.start()
    entries = {}
    for name, cam, scene, start, caption, frames in [
        ("van", "door", 1, T0, "a red van parks at the door", 2),
        ("cat", "door", 2, T0 + 600, "a cat on the mat", 1),
        ("yard", "yard", 1, T0 + 300, "rain over an empty yard, a van passes", 0),
    ]:
        e = TimelineEntry(
            id=new_id("tl_"), camera=cam, scene=scene, chunk=0, pts=start - T0, wall_time=start,
            end_pts=start - T0 + 300, end_wall_time=start + 300, caption=caption,
            keyframes=tuple(Keyframe("first", start - T0 + i, start + i) for i in range(frames)),
        )  # fmt: skip
        store.add_entry(e, [jpeg(40 * (i + 1)) for i in range(frames)])
        entries[name] = e
    thumbs.write("door", 2, jpeg(99))  # the cat scene has today's thumbnail
    store.log.scene(SceneChange("yard", 2, 300.0, time.time(), 1.0))  # the yard's scene now: open
    store.flush()
    face = TimelineFace(store, ["door", "yard"], thumbs)
    server = WebServer(
        pipeline(["door", "yard"]).service,
        ServerConfig(host="127.0.0.1", port=0, auth_token=TOKEN),
        images=images,
        timeline=face,
    )
    port = await server.start()
    try:
        yield Node(port, store, entries)
    finally:
        await server.close()
        await images.close()
        close_store(store)


async def get_json(port: int, path: str) -> tuple[int, object]:
    status, _, body = await http_get(port, path, OK)
    return status, json.loads(body) if status == 200 else body.decode()


async def test_the_camera_scene_list_keeps_its_fields_and_adds_the_entry(node: Node) -> None:
    status, body = await get_json(node.port, "/api/cameras/door/scenes")
    assert status == 200 and isinstance(body, dict)
    assert body["camera"] == "door" and body["next_cursor"] is None
    van, cat = node.entries["van"], node.entries["cat"]
    rows = body["scenes"]
    assert [r["id"] for r in rows] == [cat.id, van.id]  # newest first
    assert rows[1] == {
        "scene": 1, "pts": 0.0, "wall_time": T0, "caption": "a red van parks at the door",
        "thumbnail": f"/api/timeline/{van.id}/keyframes/0.jpg", "id": van.id, "camera": "door", "chunk": 0,
        "end_pts": 300.0, "end_wall_time": T0 + 300,
        "keyframes": [f"/api/timeline/{van.id}/keyframes/0.jpg", f"/api/timeline/{van.id}/keyframes/1.jpg"],
    }  # fmt: skip
    assert rows[0]["thumbnail"] == "/api/cameras/door/scenes/2.jpg" and "rank" not in rows[0]
    status, body = await get_json(node.port, "/api/cameras/yard/scenes")
    assert [(r["scene"], r["end_wall_time"] is None) for r in body["scenes"]] == [(2, True), (1, False)]  # type: ignore[index]


async def test_search_pages_and_filters(node: Node) -> None:
    status, body = await get_json(node.port, "/api/cameras/door/scenes?q=" + quote("when did the van come?"))
    assert status == 200 and [r["id"] for r in body["scenes"]] == [node.entries["van"].id]  # type: ignore[index]
    assert body["scenes"][0]["rank"] > 0  # type: ignore[index]
    status, body = await get_json(node.port, "/api/scenes?q=van")
    assert {r["camera"] for r in body["scenes"]} == {"door", "yard"} and "camera" not in body  # type: ignore[union-attr,index]
    status, body = await get_json(node.port, "/api/scenes?q=van&camera=yard")
    assert [r["id"] for r in body["scenes"]] == [node.entries["yard"].id]  # type: ignore[index]
    # time windows: ISO-8601 with a zone (the + encoded) or epoch seconds
    window = "from=" + quote("2026-12-07T08:09:00+01:00") + f"&to={T0 + 700:.0f}"
    status, body = await get_json(node.port, f"/api/scenes?{window}")
    assert [r["id"] for r in body["scenes"]] == [  # type: ignore[index]
        node.entries["cat"].id, node.entries["yard"].id
    ]  # fmt: skip
    # pages
    ids, path = [], "/api/scenes?limit=1"
    while True:
        status, body = await get_json(node.port, path)
        assert status == 200 and isinstance(body, dict)
        ids += [r["id"] for r in body["scenes"]]
        if body["next_cursor"] is None:
            break
        path = f"/api/scenes?limit=1&cursor={body['next_cursor']}"
    assert len(ids) == 4 and len(set(ids)) == 4


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/api/scenes?from=2026-12-07T08:00:00", 400, "from needs a zone"),
        ("/api/scenes?to=soon", 400, "to must be ISO-8601 with a zone"),
        ("/api/scenes?from=1796630400&to=1796626800", 400, "from is after to"),
        ("/api/scenes?limit=0", 400, "limit must be 1..500"),
        ("/api/cameras/door/scenes?limit=501", 400, "limit must be 1..500"),
        ("/api/scenes?q=what%20is%20it", 400, "no word to search for"),
        ("/api/scenes?cursor=abc.def", 400, "cursor is not valid"),
        ("/api/scenes?camera=a%20b", 400, "camera must be camera ids"),
        ("/api/scenes?camera=nope", 404, "unknown camera 'nope'"),
        ("/api/cameras/nope/scenes", 404, "unknown camera"),
        ("/api/cameras/nope/scenes?q=van", 404, "unknown camera"),
        ("/api/timeline/tl_nope/keyframes/0.jpg", 404, "no such keyframe"),
        ("/api/timeline/..%2F..%2Fetc/keyframes/0.jpg", 404, "not found"),
        ("/api/timeline/tl_x/keyframes/x.jpg", 404, "not found"),
    ],
)
async def test_bad_requests_say_why(node: Node, path: str, status: int, reason: str) -> None:
    got, _, body = await http_get(node.port, path, OK)
    assert got == status and reason in body.decode(), body


async def test_a_cursor_of_another_query_is_refused(node: Node) -> None:
    _, body = await get_json(node.port, "/api/scenes?limit=1")
    cursor = body["next_cursor"]  # type: ignore[index]
    status, _, text = await http_get(node.port, f"/api/scenes?limit=1&q=van&cursor={cursor}", OK)
    assert status == 400 and b"another query" in text


async def test_keyframes_are_served_and_a_missing_file_is_404(node: Node) -> None:
    van = node.entries["van"]
    for i in (0, 1):
        status, hdrs, body = await http_get(node.port, f"/api/timeline/{van.id}/keyframes/{i}.jpg", OK)
        assert status == 200 and hdrs["content-type"] == "image/jpeg" and body == jpeg(40 * (i + 1))
        assert hdrs["cross-origin-resource-policy"] == "same-origin"
    assert (await http_get(node.port, f"/api/timeline/{van.id}/keyframes/2.jpg", OK))[0] == 404
    assert node.store.dir is not None
    (node.store.dir / "door" / f"{van.id}-1.jpg").unlink()
    status, _, body = await http_get(node.port, f"/api/timeline/{van.id}/keyframes/1.jpg", OK)
    assert status == 404 and b"\xff\xd8" not in body
    for path in (f"/api/timeline/{van.id}/keyframes/0.jpg", "/api/scenes", "/api/cameras/door/scenes?q=van"):
        status, _, body = await http_get(node.port, path)
        assert status == 401 and b"\xff\xd8" not in body and b"van" not in body
