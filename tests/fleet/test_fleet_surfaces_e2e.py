"""Every surface of a daemon through the gateway, one link per node, a node killed mid-stream — real processes: two
nodes (`livesight serve --node`, the tiny model on the built-in demo stream), one Mosquitto, one gateway, each with
its own credential (the nodes' client token, the gateway's client token, the fleet's `node_token`).

Checked as a user would: pictures through the gateway are the node's bytes (latest frame, overlay, ETag/304, scenes
and thumbnails); the official `openai` client lists every camera of the fleet and gets answers, plain and streamed,
from the camera's owner; eight WebSocket clients on the gateway make one connection to each node; kill -9 node b while
it streams → only b's answers fail, with `camera_unavailable`, while node a's answer completes; b restarted → its
cameras answer again over one new link; a node stopped cleanly leaves its cameras' retained MQTT state `unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

import aiomqtt
import openai
import pytest
from websockets.asyncio.client import connect

from tests.fleet.procs import OWNERS, Proc, gateway, node, write_config
from tests.fleet.test_fleet_e2e import Client
from tests.helpers import http_get
from tests.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

NODE_TOKEN = "node-clients-token"
GW_TOKEN = "gateway-clients-token"
FLEET_TOKEN = "fleet-credential-0123456789"
CONFIG = """
cameras:
  - {{id: door, source: "builtin:demo", sample_fps: 2}}
  - {{id: yard, source: "builtin:demo", sample_fps: 2}}
  - {{id: gate, source: "builtin:demo", sample_fps: 2}}
  - {{id: hall, source: "builtin:demo", sample_fps: 2, node: b}}
model:
  preset: tiny-random
  image_size: 112
  max_new_tokens: 256
memory:
  token_budget: 1024
  database: "{dir}/${{NODE_NAME:-gateway}}.sqlite"
proactive:
  enabled: false
server:
  host: 127.0.0.1
  port: 0
  stats_interval_s: 1
  auth_token: ${{CLIENT_TOKEN}}
mqtt:
  enabled: true
  port: {mqtt_port}
  prefix: {prefix}
  keepalive_s: {keepalive}
  reconnect: {{initial_s: 0.2, max_s: 1}}
fleet:
  nodes: [a, b]
  node_token: ${{FLEET_TOKEN}}
"""
NODE_AUTH = {"Authorization": f"Bearer {NODE_TOKEN}"}
GW_AUTH = {"Authorization": f"Bearer {GW_TOKEN}"}


def start_node(cfg: Path, name: str) -> Proc:
    return node(cfg, name, env={"NODE_NAME": name, "CLIENT_TOKEN": NODE_TOKEN, "FLEET_TOKEN": FLEET_TOKEN})


async def health(port: int, auth: dict[str, str]) -> dict[str, Any]:
    _, _, body = await http_get(port, "/healthz", auth)
    return json.loads(body)


async def until(pred: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await pred()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not reached within {within} s (last: {str(last)[:300]})")


async def same_picture(gw: int, node_port: int, path: str) -> bytes:
    """The gateway's answer is the node's: the same frame (X-Frame-Seq) gives the same bytes (frames change at 2 fps,
    so fetch both until they name the same frame)."""
    for _ in range(20):
        s1, h1, through = await http_get(gw, path, GW_AUTH)
        s2, h2, direct = await http_get(node_port, path, NODE_AUTH)
        assert (s1, s2) == (200, 200), (path, s1, s2, through[:200])
        if h1["x-frame-seq"] == h2["x-frame-seq"]:
            assert through == direct and h1["etag"] == h2["etag"], path
            status, _, empty = await http_get(gw, path, {**GW_AUTH, "If-None-Match": h1["etag"]})
            assert status in (304, 200) and (status == 200 or empty == b"")
            return through
    raise AssertionError(f"{path}: never the same frame through the gateway and direct")


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert m is not None, name
    return float(m.group(1))


async def test_every_surface_one_link_and_a_node_killed_mid_stream(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, broker.port, prefix, keepalive=2, template=CONFIG, dir=str(tmp_path))
    gw_env = {"CLIENT_TOKEN": GW_TOKEN, "FLEET_TOKEN": FLEET_TOKEN}
    procs: list[Proc] = [start_node(cfg, "a"), start_node(cfg, "b"), gateway(cfg, env=gw_env)]
    try:
        ports = {p.name: await asyncio.to_thread(p.port) for p in procs}
        gw, pa, pb = ports["gateway"], ports["node-a"], ports["node-b"]
        await until(lambda: _ok(gw), 120, "gateway health ok")
        h = await health(gw, GW_AUTH)
        assert {c: v["node"] for c, v in h["cameras"].items()} == OWNERS
        assert {n: v["url_from"] for n, v in h["nodes"].items()} == {"a": "announced", "b": "announced"}  # signed

        # --- pictures: the node's bytes, scenes and thumbnails (the demo stream cuts every 5 s)
        for cam in OWNERS:
            port = pa if OWNERS[cam] == "a" else pb
            await until(lambda cam=cam, port=port: _has_frame(port, cam), 60, f"{cam} has a frame")
            for q in ("", "?overlay=1"):
                assert (await same_picture(gw, port, f"/api/cameras/{cam}/latest.jpg{q}"))[:2] == b"\xff\xd8"
        scenes = await until(lambda: _scenes(gw, "gate"), 60, "a scene with a thumbnail on gate")
        thumb = scenes[0]["thumbnail"]
        assert thumb.startswith("/api/cameras/gate/scenes/")  # a path: it points at the gateway
        s1, _, through = await http_get(gw, thumb, GW_AUTH)
        s2, _, direct = await http_get(pb, thumb, NODE_AUTH)
        assert (s1, s2) == (200, 200) and through == direct
        assert (await http_get(gw, thumb, NODE_AUTH))[0] == 401  # the node's token does not open the gateway

        # --- the OpenAI-compatible API, official client
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw}/v1", api_key=GW_TOKEN, max_retries=0) as c:
            assert [m.id for m in (await c.models.list()).data] == [f"livesight/{cam}" for cam in OWNERS]
            for cam in ("door", "gate"):
                done = await c.chat.completions.create(
                    model=f"livesight/{cam}", messages=[{"role": "user", "content": "What do you see?"}], max_tokens=8
                )
                assert done.object == "chat.completion" and done.choices[0].message.content
                assert done.choices[0].finish_reason == "length" and done.usage is not None
            stream = await c.chat.completions.create(
                model="livesight/hall", messages=[{"role": "user", "content": "Hi"}], stream=True, max_tokens=6
            )
            chunks = [ch async for ch in stream]
            assert chunks[0].object == "chat.completion.chunk" and chunks[-1].choices[0].finish_reason == "length"
            # the same object shapes as the node's own API (asked directly, with the node's client token)
            req: Any = {"model": "livesight/gate", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{pb}/v1", api_key=NODE_TOKEN) as direct:
                d = (await direct.chat.completions.create(**req)).model_dump()
            g = (await c.chat.completions.create(**req)).model_dump()
            assert (
                set(d) == set(g) and set(d["choices"][0]) == set(g["choices"][0]) and set(d["usage"]) == set(g["usage"])
            )
            assert (d["object"], d["model"], g["model"]) == ("chat.completion", "livesight/gate", "livesight/gate")

        # --- eight WebSocket clients, one link per node
        async with contextlib.AsyncExitStack() as stack:
            clients = [Client(await stack.enter_async_context(connect(f"ws://127.0.0.1:{gw}/?token={GW_TOKEN}")))
                       for _ in range(8)]  # fmt: skip
            for cl in clients:
                await cl.until(lambda e: e["type"] == "session.created", 10, "session.created")
            cams = list(OWNERS)
            answers = await asyncio.gather(*(cl.ask(f"q{i}", cams[i % 4]) for i, cl in enumerate(clients)))
            assert all(a["type"] == "response.done" and a["status"] == "completed" for a in answers), answers
            for port in (pa, pb):
                _, _, text = await http_get(port, "/metrics", NODE_AUTH)
                assert metric(text.decode(), "livesight_ws_clients") == 1.0  # the gateway's link, nothing else
            _, _, text = await http_get(gw, "/metrics", GW_AUTH)
            for n in ("a", "b"):
                assert metric(text.decode(), f'livesight_gateway_upstream_connections{{node="{n}"}}') == 1.0
            assert metric(text.decode(), "livesight_ws_clients") == 8.0

            # --- kill -9 node b while it streams: only b's answers fail, with a code; a's completes
            one, two = clients[0], clients[1]
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gw}/v1", api_key=GW_TOKEN, max_retries=0) as c:
                stream = await c.chat.completions.create(
                    model="livesight/gate", messages=[{"role": "user", "content": "Tell me everything"}], stream=True
                )
                await one.ws.send(json.dumps({"type": "query", "id": "long-b", "text": "Tell me", "camera": "hall"}))
                await two.ws.send(json.dumps({"type": "query", "id": "long-a", "text": "Tell me", "camera": "door"}))
                it = aiter(stream)
                first = await anext(it)  # the b answer is streaming now
                assert first.object == "chat.completion.chunk"
                await one.until(  # in flight on b's link (queued behind the streamed answer on b's one model)
                    lambda e: e["type"] == "response.created" and e.get("query_id") == "long-b", 30, "hall's answer"
                )
                procs[1].kill9()
                with pytest.raises(openai.APIError) as e:
                    async for _ in it:
                        pass
                assert isinstance(e.value.body, dict) and e.value.body["code"] == "camera_unavailable", e.value.body
            b_done = await one.until(
                lambda e: e.get("query_id") == "long-b" and e["type"] in ("response.done", "error"), 10, "b fails"
            )
            assert b_done["type"] == "response.done" and b_done["status"] == "failed", b_done
            assert b_done["code"] == "camera_unavailable", b_done
            a_done = await two.until(lambda e: e.get("query_id") == "long-a" and e["type"] == "response.done", 120, "a")
            assert a_done["status"] == "completed", a_done  # node a's answer, on its own link, was not touched
            refused = await one.ask("q-gate-down", "gate", within=5)
            assert refused["type"] == "error" and refused["code"] == "camera_unavailable", refused
            status, _, body = await http_get(gw, "/api/cameras/gate/latest.jpg", GW_AUTH)
            assert status == 503 and body.startswith(b"camera_unavailable")

            # --- b back: the same clients ask its cameras again, over one new link
            procs[1] = start_node(cfg, "b")
            await asyncio.to_thread(procs[1].port)
            await one.until(
                lambda e: e["type"] == "camera.state" and e["camera"] == "gate" and e["state"] != "unavailable",
                90,
                "gate back",
            )
            assert (await one.ask("q-gate-back", "gate", within=60))["status"] == "completed"
            _, _, text = await http_get(gw, "/metrics", GW_AUTH)
            assert metric(text.decode(), 'livesight_gateway_upstream_connections{node="b"}') == 1.0
            assert metric(text.decode(), 'livesight_gateway_upstream_connects_total{node="b"}') == 2.0
            for cl in clients:
                await cl.close()

        # --- a clean stop of node a: its cameras' retained state is no longer `live`
        assert procs[0].stop() == 0
        states = await _retained_states(broker.port, prefix)
        assert states["door"] == states["yard"] == "unavailable", states
    finally:
        codes = [p.stop() for p in procs]
    assert codes[2] == 0, "".join(procs[2].lines[-30:])


async def _ok(port: int) -> bool:
    return (await health(port, GW_AUTH)).get("status") == "ok"


async def _has_frame(port: int, cam: str) -> bool:
    return (await http_get(port, f"/api/cameras/{cam}/latest.jpg", NODE_AUTH))[0] == 200


async def _scenes(port: int, cam: str) -> list[dict[str, Any]] | None:
    status, _, body = await http_get(port, f"/api/cameras/{cam}/scenes", GW_AUTH)
    if status != 200:
        return None
    scenes = [s for s in json.loads(body)["scenes"] if s["thumbnail"]]
    return scenes or None


async def _retained_states(port: int, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe(f"{prefix}/+/state", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for m in c.messages:
                    obj = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    out[obj["camera"]] = obj["state"]
    return out
