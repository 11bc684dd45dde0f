"""Every HTTP surface of a daemon, through the gateway, for every camera (in process: real nodes' web faces over the
real Service and model worker with the echo backend, real Mosquitto, the real gateway; the official `openai` client).

Pictures are the node's own bytes (latest frame, the DTD overlay, ETag → 304, scenes and their thumbnails, whose URLs
point at the gateway); `/v1/models` lists the whole fleet; `/v1/chat/completions` answers, plain and streamed, from
the camera's node with the daemon's object shapes; the gateway's client token guards all of it; a camera whose node
is down gets `camera_unavailable` (503) on every surface.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import openai
import pytest
from websockets.asyncio.client import connect

from tests.fleet.inproc import OWNERS, Gateway, Node, feed_one, gateway, hello, linked, of_type, start_node
from tests.helpers import eventually, http_get, parse_response, recv_until
from tests.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

TOKEN = "gateway-clients"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def pictured(broker: Mosquitto, prefix: str, tmp_path: Path) -> AsyncIterator[tuple[dict[str, Node], Gateway]]:
    """Nodes a, b with event logs and thumbnails; a gateway with a client token; two frames on cam1 and cam3."""
    nodes = {n: await start_node(n, broker, prefix, pictures=tmp_path) for n in ("a", "b")}
    try:
        async with gateway(broker, prefix, token=TOKEN) as gw:
            await linked(gw, "a", "b")
            for cam in ("cam1", "cam3"):
                node = nodes[OWNERS[cam]]
                await feed_one(node, cam, np.full((56, 56, 3), 40, np.uint8), 0.0)
                await feed_one(node, cam, np.full((56, 56, 3), 200, np.uint8), 1.0)
            yield nodes, gw
    finally:
        for n in nodes.values():
            await n.stop()


def client(port: int, key: str = TOKEN) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=10)


async def test_pictures_are_the_nodes_own_bytes(pictured: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = pictured
    for cam in ("cam1", "cam3"):
        node_port = nodes[OWNERS[cam]].server.port
        assert node_port is not None
        for query in ("", "?overlay=1"):
            path = f"/api/cameras/{cam}/latest.jpg{query}"
            status, direct_h, direct = await http_get(node_port, path)
            status_gw, h, body = await http_get(gw.port, path, AUTH)
            assert (status, status_gw) == (200, 200)
            assert body == direct and body[:2] == b"\xff\xd8", path  # the same bytes
            assert (h["etag"], h["x-frame-seq"], h["x-frame-pts"]) == (
                direct_h["etag"],
                direct_h["x-frame-seq"],
                direct_h["x-frame-pts"],
            )
            assert h["content-type"] == "image/jpeg" and h["cross-origin-resource-policy"] == "same-origin"
            status, h304, body = await http_get(gw.port, path, {**AUTH, "If-None-Match": h["etag"]})
            assert status == 304 and body == b"" and h304["etag"] == h["etag"]
    # refused without the gateway's token, before any byte of a picture; an unknown camera is 404 as on a node
    status, _, body = await http_get(gw.port, "/api/cameras/cam1/latest.jpg")
    assert status == 401 and b"\xff\xd8" not in body
    status, _, body = await http_get(gw.port, "/api/cameras/cam1/latest.jpg", {**AUTH, "Origin": "http://evil.example"})
    assert status == 403 and b"\xff\xd8" not in body
    assert (await http_get(gw.port, "/api/cameras/nope/latest.jpg", AUTH))[0] == 404
    assert (await http_get(gw.port, "/api/cameras/cam2/latest.jpg", AUTH))[0] == 503  # no frame yet, as on node a
    status, _, body = await http_get(gw.port, f"/api/cameras/cam1/latest.jpg?token={TOKEN}")
    assert status == 200 and body[:2] == b"\xff\xd8"


async def test_scenes_and_thumbnails_point_at_the_gateway(pictured: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = pictured
    async with connect(gw.url + f"/?token={TOKEN}") as ws:
        await hello(ws)
        await nodes["b"].scene("cam3", 2, 2.0)
        change, _ = await recv_until(ws, of_type("scene.change", camera="cam3"))
    assert change["thumbnail"] == "/api/cameras/cam3/scenes/2.jpg"  # a path: the gateway the client is on serves it
    await eventually(lambda: nodes["b"].images.thumbnails_written == 1, 5, "thumbnail written")
    status, _, thumb = await http_get(gw.port, change["thumbnail"], AUTH)
    node_port = nodes["b"].server.port
    assert node_port is not None
    assert status == 200 and thumb == (await http_get(node_port, change["thumbnail"]))[2]
    status, _, body = await http_get(gw.port, "/api/cameras/cam3/scenes?limit=5", AUTH)
    assert status == 200 and body == (await http_get(node_port, "/api/cameras/cam3/scenes?limit=5"))[2]
    scenes = json.loads(body)["scenes"]
    assert [(s["scene"], s["thumbnail"]) for s in scenes] == [(2, "/api/cameras/cam3/scenes/2.jpg")]
    assert (await http_get(gw.port, "/api/cameras/cam3/scenes?limit=0", AUTH))[0] == 400  # the node's own check
    assert (await http_get(gw.port, "/api/cameras/cam3/scenes/9.jpg", AUTH))[0] == 404


async def test_the_openai_api_answers_for_every_camera(pictured: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = pictured
    async with client(gw.port) as c:
        models = await c.models.list()
        assert [m.id for m in models.data] == [f"livesight/{cam}" for cam in OWNERS]
        assert (await c.models.retrieve("livesight/cam3")).id == "livesight/cam3"
        for cam in ("cam1", "cam3"):
            answer = await c.chat.completions.create(
                model=f"livesight/{cam}", messages=[{"role": "user", "content": f"what about {cam}?"}]
            )
            assert answer.object == "chat.completion" and answer.model == f"livesight/{cam}"
            assert (answer.choices[0].message.content or "").endswith(f"You asked: what about {cam}?")
            assert answer.choices[0].finish_reason == "stop" and answer.usage is not None
            assert answer.id.startswith("chatcmpl-resp_")
        stream = await c.chat.completions.create(
            model="livesight/cam3",
            messages=[{"role": "user", "content": "say: one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert all(ch.object == "chat.completion.chunk" for ch in chunks)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text.split() == ["one", "two", "three"]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        capped = await c.chat.completions.create(
            model="livesight/cam3", messages=[{"role": "user", "content": "say: a b c d e"}], max_tokens=2
        )
        assert capped.choices[0].finish_reason == "length" and capped.choices[0].message.content.split() == ["a", "b"]
    assert nodes["b"].pipe.backend.asked[:2] == [("cam3", "what about cam3?"), ("cam3", "say: one two three")]
    assert nodes["a"].pipe.backend.asked == [("cam1", "what about cam1?")]
    # the same shapes as the node's own API
    node_port = nodes["b"].server.port
    async with client(node_port or 0, key="none") as direct, client(gw.port) as through:
        req = {"model": "livesight/cam3", "messages": [{"role": "user", "content": "say: x"}]}
        d, g = await direct.chat.completions.create(**req), await through.chat.completions.create(**req)  # type: ignore[call-overload]
        assert set(d.model_dump()) == set(g.model_dump()) and d.choices[0].message == g.choices[0].message
    async with client(gw.port, key="wrong") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()


async def test_a_camera_whose_node_is_down_is_unavailable_on_every_surface(
    pictured: tuple[dict[str, Node], Gateway],
) -> None:
    nodes, gw = pictured
    await nodes["b"].stop()
    await eventually(lambda: not gw.server.hub.links["b"].connected, 5, "link to b down")
    status, h, body = await http_get(gw.port, "/api/cameras/cam3/latest.jpg", AUTH)
    assert status == 503 and body.startswith(b"camera_unavailable: ") and h["retry-after"] == "5"
    assert (await http_get(gw.port, "/api/cameras/cam3/scenes", AUTH))[0] == 503
    async with client(gw.port) as c:
        assert "livesight/cam3" in [m.id for m in (await c.models.list()).data]  # still a camera of the fleet
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as e:
                await c.chat.completions.create(
                    model="livesight/cam3", messages=[{"role": "user", "content": "hi"}], stream=stream
                )
            assert e.value.status_code == 503
            assert e.value.body["code"] == "camera_unavailable", e.value.body  # type: ignore[index]
            assert e.value.body["type"] == "server_error"  # type: ignore[index]
        ok = await c.chat.completions.create(model="livesight/cam1", messages=[{"role": "user", "content": "hi"}])
        assert (ok.choices[0].message.content or "").endswith("You asked: hi")  # node a's cameras are not affected
    assert (await http_get(gw.port, "/api/cameras/cam1/latest.jpg", AUTH))[0] == 200
    async with connect(gw.url + f"/?token={TOKEN}") as ws:
        h = await hello(ws)
        assert {c["id"]: c["state"] for c in h["cameras"]}["cam3"] == "unavailable"
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "x", "camera": "cam3"}))
        err, _ = await recv_until(ws, of_type("error", event_id="q1"))
        assert err["code"] == "camera_unavailable"


async def test_the_nodes_picture_door_is_for_the_gateway_only(pictured: tuple[dict[str, Node], Gateway]) -> None:
    """/fleet/api on a node (a loopback fleet without a credential): a loopback Host only (a page whose name was
    rebound to 127.0.0.1 sends its own), never a browser (an Origin), never a WebSocket path but /fleet."""
    nodes, _ = pictured
    port = nodes["a"].server.port
    assert port is not None
    path = "/fleet/api/cameras/cam1/latest.jpg"
    close = {"Connection": "close"}  # the door keeps connections alive (for the gateway's pool): this client does not
    status, _, body = await http_get(port, path, close)
    assert status == 200 and body[:2] == b"\xff\xd8"
    status, _, body = await raw_get(port, path, host=f"evil.example:{port}")
    assert status == 403 and b"\xff\xd8" not in body
    assert (await raw_get(port, path, host=f"localhost:{port}"))[0] == 200
    status, _, body = await http_get(port, path, {**close, "Origin": f"http://127.0.0.1:{port}"})
    assert status == 403 and b"\xff\xd8" not in body
    assert (await http_get(port, "/fleet/other", close))[0] == 404
    assert (await http_get(port, "/fleet/api/cameras/cam1/latest.jpg", close, method="POST"))[0] == 404


async def raw_get(port: int, path: str, *, host: str) -> tuple[int, dict[str, str], bytes]:
    """One GET with exactly this Host header (tests.helpers always sends 127.0.0.1's)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return parse_response(data)
