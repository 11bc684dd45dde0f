"""The timeline through the gateway (in process: two real nodes over the real Service and model worker with the echo
backend, each with a real event log and timeline store on disk; real Mosquitto; the real gateway): a camera's summary
comes from its node, streamed as the node streams it; /api/scenes asks every node and merges, and names a node that
is down (`partial`, `missing`) instead of failing; keyframes come from the node that holds them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from livesight.types import Keyframe, TimelineEntry
from tests.fleet.inproc import Gateway, Node, gateway, linked, start_node
from tests.helpers import http_get
from tests.mosquitto import MOSQUITTO, Mosquitto
from tests.protocols.web.test_browser import ARGS, CHROMIUM
from tests.timeline.conftest import jpeg

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

TOKEN = "gateway-clients"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = time.time()


def entry(id_: str, camera: str, scene: int, start: float, caption: str) -> TimelineEntry:
    return TimelineEntry(
        id=id_,
        camera=camera,
        scene=scene,
        chunk=0,
        pts=float(scene),
        wall_time=start,
        end_pts=float(scene) + 20,
        end_wall_time=start + 20,
        caption=caption,
        keyframes=(Keyframe("first", float(scene), start),),
        caption_state="done",
    )


# node a owns cam1 and cam2, node b cam3 (tests/fleet/inproc.py OWNERS)
ENTRIES = {
    "a": [
        entry("tl_a1", "cam1", 1, NOW - 3000, "a red van parks at the gate"),
        entry("tl_a2", "cam2", 1, NOW - 1200, "a cat crosses the yard"),
    ],
    "b": [
        entry("tl_b1", "cam3", 1, NOW - 2400, "a red van leaves the street"),
        entry("tl_b2", "cam3", 2, NOW - 600, "a courier rings the bell"),
    ],
}


def fill(node: Node) -> None:
    assert node.timeline is not None
    for e in ENTRIES[node.name]:
        node.timeline.add_entry(e, [jpeg(60 + 40 * e.scene)])
    node.timeline.flush()


@pytest.fixture
async def fleet_timeline(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, Node], Gateway]]:
    nodes = {n: await start_node(n, broker, prefix, pictures=tmp_path, timeline=True) for n in ("a", "b")}
    for n in nodes.values():
        fill(n)
    try:
        async with gateway(broker, prefix, token=TOKEN) as gw:
            await linked(gw, "a", "b")
            yield nodes, gw
    finally:
        for n in nodes.values():
            if not n.task.done():
                await n.stop()


def parse_sse(body: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_a_summary_through_the_gateway_comes_from_the_cameras_node(
    fleet_timeline: tuple[dict[str, Node], Gateway],
) -> None:
    _, gw = fleet_timeline
    status, headers, body = await http_get(gw.port, "/api/cameras/cam3/summary", AUTH)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = parse_sse(body)
    assert [k for k, _ in events][-1] == "done" and len(events) > 1
    done = events[-1][1]
    assert done["camera"] == "cam3" and "a courier rings the bell" in str(done["text"])
    assert [c["id"] for c in done["citations"]] == ["tl_b1", "tl_b2"]  # type: ignore[union-attr]
    status, _, body = await http_get(gw.port, "/api/cameras/cam1/summary?stream=false", AUTH)
    assert status == 200 and [c["id"] for c in json.loads(body)["citations"]] == ["tl_a1"]
    assert (await http_get(gw.port, "/api/cameras/cam1/summary?from=nonsense", AUTH))[0] == 400  # the node's check
    assert (await http_get(gw.port, "/api/cameras/nope/summary", AUTH))[0] == 404
    assert (await http_get(gw.port, "/api/cameras/cam1/summary"))[0] == 401  # the gateway's token first


async def test_a_summary_of_a_camera_whose_node_is_down_is_unavailable(
    fleet_timeline: tuple[dict[str, Node], Gateway],
) -> None:
    nodes, gw = fleet_timeline
    await nodes["b"].stop()
    status, headers, body = await http_get(gw.port, "/api/cameras/cam3/summary", AUTH)
    assert status == 503 and body.startswith(b"camera_unavailable: ") and headers["retry-after"] == "5"


async def test_a_search_with_a_node_down_names_it(fleet_timeline: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet_timeline
    await nodes["b"].stop()
    status, _, body = await http_get(gw.port, "/api/scenes?q=van", AUTH)
    assert status == 200
    reply = json.loads(body)
    assert reply["partial"] is True and reply["missing"] == ["b"]
    assert (await http_get(gw.port, "/api/scenes?limit=0", AUTH))[0] == 400


async def test_a_search_asks_every_node_and_merges(fleet_timeline: tuple[dict[str, Node], Gateway]) -> None:
    _, gw = fleet_timeline
    status, _, body = await http_get(gw.port, "/api/scenes?q=red+van", AUTH)
    assert status == 200
    reply = json.loads(body)
    assert reply["partial"] is False and reply["missing"] == []
    rows = reply["scenes"]
    assert {(r["id"], r["node"]) for r in rows} == {("tl_a1", "a"), ("tl_b1", "b")}
    assert rows[0]["rank"] >= rows[1]["rank"]  # best first
    # without a text: every entry of the fleet, newest first; the limit applies to the merged list
    status, _, body = await http_get(gw.port, "/api/scenes?limit=3", AUTH)
    rows = json.loads(body)["scenes"]
    assert [r["id"] for r in rows] == ["tl_b2", "tl_a2", "tl_b1"]
    status, _, body = await http_get(gw.port, "/api/scenes?camera=cam3", AUTH)
    assert [r["id"] for r in json.loads(body)["scenes"]] == ["tl_b2", "tl_b1"]
    # a time window (epoch seconds and ISO-8601), forwarded to every node
    status, _, body = await http_get(gw.port, f"/api/scenes?from={int(NOW - 1500)}", AUTH)
    assert {r["id"] for r in json.loads(body)["scenes"]} == {"tl_a2", "tl_b2"}
    assert (await http_get(gw.port, "/api/scenes?from=soon", AUTH))[0] == 400  # the nodes' own check, with why
    assert (await http_get(gw.port, "/api/scenes"))[0] == 401


async def test_keyframes_come_from_the_node_that_holds_them(fleet_timeline: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet_timeline
    status, _, body = await http_get(gw.port, "/api/scenes?camera=cam3", AUTH)
    row = next(r for r in json.loads(body)["scenes"] if r["id"] == "tl_b2")
    (url,) = row["keyframes"]
    assert url == row["thumbnail"] == "/api/timeline/tl_b2/keyframes/0.jpg?node=b"
    node_port = nodes["b"].server.port
    assert node_port is not None
    direct = await http_get(node_port, "/api/timeline/tl_b2/keyframes/0.jpg")
    status, headers, got = await http_get(gw.port, url, AUTH)
    assert status == 200 and got == direct[2] and got[:2] == b"\xff\xd8"
    assert headers["content-type"] == "image/jpeg"
    # a citation's thumbnail (no node in it): the owner of ?camera=, or every node asked
    for path in ("/api/timeline/tl_b2/keyframes/0.jpg?camera=cam3", "/api/timeline/tl_b2/keyframes/0.jpg"):
        status, _, got = await http_get(gw.port, path, AUTH)
        assert status == 200 and got == direct[2], path
    assert (await http_get(gw.port, "/api/timeline/tl_zz/keyframes/0.jpg", AUTH))[0] == 404
    assert (await http_get(gw.port, "/api/timeline/tl_b2/keyframes/0.jpg?node=nope", AUTH))[0] == 404
    await nodes["b"].stop()
    status, _, body = await http_get(gw.port, url, AUTH)
    assert status == 503 and body.startswith(b"camera_unavailable: ")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/system-deps.sh)")
async def test_the_chat_page_through_the_gateway_shows_a_nodes_citations(
    fleet_timeline: tuple[dict[str, Node], Gateway],
) -> None:
    from playwright.async_api import async_playwright

    _, gw = fleet_timeline
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"http://127.0.0.1:{gw.port}/?token={TOKEN}")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            await page.locator(".camera .cam-id", has_text="cam3").wait_for()
            await page.select_option("#camera", "cam3")
            await page.fill("#question", "anything happen in the last hour?")
            await page.click("#ask")
            cites = page.locator(".msg.answer .citations .citation img")
            await cites.nth(1).wait_for()
            assert await cites.count() == 2
            assert "/api/timeline/tl_b1/keyframes/0.jpg?camera=cam3" in str(await cites.nth(0).get_attribute("src"))
            await page.wait_for_function(  # node b's keyframes, through the gateway
                "() => [...document.querySelectorAll('.citation img')].every((i) => i.complete && i.naturalWidth > 0)"
            )
        finally:
            await browser.close()
    assert problems == [], problems


async def test_summaries_streaming_through_the_gateway_leave_pictures_their_slots(
    fleet_timeline: tuple[dict[str, Node], Gateway],
) -> None:
    import asyncio

    from tests.helpers import http_request, request_head

    nodes, gw = fleet_timeline
    gate = nodes["b"].pipe.hold()  # node b's generations wait: its summaries stream (keep-alives) without an end
    conns = []
    try:
        for _ in range(4):  # as many summaries as a node gets streams through the gateway
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(request_head(gw.port, "GET", "/api/cameras/cam3/summary", AUTH))
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
            conns.append(writer)
        status, _, body = await http_get(gw.port, "/api/timeline/tl_b2/keyframes/0.jpg?node=b", AUTH)
        assert status == 200 and body[:2] == b"\xff\xd8"
        # a fifth waits for a stream slot (node_http.QUEUE_S), then is refused: busy
        status, _, body = await http_request(gw.port, "GET", "/api/cameras/cam3/summary", headers=AUTH, within=15)
        assert status == 503 and b"busy" in body
    finally:
        gate.set()
        for w in conns:
            w.close()
            await w.wait_closed()
