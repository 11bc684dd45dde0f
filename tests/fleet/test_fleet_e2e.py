"""Two daemons (nodes a, b) from one fleet config, one gateway, one real Mosquitto — all real processes on loopback.

Checked as a user would: each camera runs on exactly one node; a WebSocket client on the gateway asks all four
cameras and gets four answers; the chat page served by the gateway lists all four (headless chromium, when
installed); kill -9 node b → its cameras turn `unavailable` (camera.state events, error
`camera_unavailable` at once, gateway health `degraded` once b's last will arrives) while node a's keep answering;
restart b → its cameras come back and answer without touching the gateway or the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from websockets.asyncio.client import ClientConnection, connect

from livesight.fleet.topics import decode_camera_info
from tests.fleet.procs import OWNERS, Proc, gateway, node, write_config
from tests.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

KEEPALIVE_S = 2  # the broker declares a silent node dead after 1.5 x this


def get_json(port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
    except OSError:
        return None


async def health_until(port: int, pred: Any, within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    body: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        body = await asyncio.to_thread(get_json, port, "/healthz")
        if body is not None and pred(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached within {within} s; last health: {body}")


class Client:
    """A WebSocket client on the gateway; a reader task keeps every event it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Condition()
        self._task = asyncio.create_task(self._read(), name="test-client-reader")

    async def _read(self) -> None:
        async for raw in self.ws:
            async with self._new:
                self.events.append(json.loads(raw))
                self._new.notify_all()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def until(self, pred: Any, within: float, what: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(within), self._new:
                while True:
                    found = next((e for e in self.events if pred(e)), None)
                    if found is not None:
                        return found
                    await self._new.wait()
        except TimeoutError:
            kinds = [(e["type"], e.get("camera") or e.get("query_id") or e.get("event_id")) for e in self.events[-30:]]
            raise AssertionError(f"{what} not received within {within} s; last events: {kinds}") from None

    async def ask(self, qid: str, camera: str, within: float = 60) -> dict[str, Any]:
        """The question's final event: response.done, or an error naming it."""
        await self.ws.send(json.dumps({"type": "query", "id": qid, "text": "What do you see?", "camera": camera}))
        return await self.until(lambda e: _ends(e, qid), within, f"an answer to {qid}")


CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()


async def _page_shows_every_camera(port: int) -> None:
    """The chat page, served by the gateway, lists the four cameras of both nodes (headless Debian chromium)."""
    from playwright.async_api import async_playwright

    from tests.protocols.web.test_browser import ARGS

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            for cam in OWNERS:
                await page.locator(".camera .cam-id", has_text=cam).wait_for(timeout=10_000)
            options = await page.locator("#camera option").all_inner_texts()
            assert sorted(options) == sorted(OWNERS), options
        finally:
            await browser.close()


def _ends(e: dict[str, Any], qid: str) -> bool:
    return (e["type"] == "response.done" and e.get("query_id") == qid) or (
        e["type"] == "error" and e.get("event_id") == qid
    )


async def retained_directory(port: int, prefix: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """camera → owner from P/+/info and node → payload from P/nodes/+/available (retained, read once)."""
    owners: dict[str, str] = {}
    nodes: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe(f"{prefix}/+/info", qos=1)
        await c.subscribe(f"{prefix}/nodes/+/available", qos=1)
        try:
            async with asyncio.timeout(1.0):
                async for m in c.messages:
                    payload = bytes(m.payload)  # type: ignore[arg-type]
                    if str(m.topic).endswith("/available"):
                        nodes[str(m.topic).split("/")[-2]] = payload
                    elif (info := decode_camera_info(payload)) is not None:
                        owners[info.camera] = info.node
        except TimeoutError:
            pass
    return owners, nodes


async def test_fleet_through_the_gateway(broker: Mosquitto, prefix: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, broker.port, prefix, keepalive=KEEPALIVE_S)
    procs: list[Proc] = [node(cfg, "a"), node(cfg, "b"), gateway(cfg)]
    a, b, gw = procs
    try:
        ports = {p.name: await asyncio.to_thread(p.port) for p in procs}
        gw_port = ports["gateway"]
        body = await health_until(gw_port, lambda h: h["status"] == "ok", 120, "gateway health ok")
        assert {c: v["node"] for c, v in body["cameras"].items()} == OWNERS

        # each camera runs on exactly one node, and the retained directory says so
        for name, proc in (("a", a), ("b", b)):
            h = await asyncio.to_thread(get_json, ports[proc.name], "/healthz")
            assert h is not None
            assert sorted(h["cameras"]) == sorted(c for c, n in OWNERS.items() if n == name)
        owners, avail = await retained_directory(broker.port, prefix)
        assert owners == OWNERS
        assert avail == {"a": b"online", "b": b"online"}

        async with connect(f"ws://127.0.0.1:{gw_port}") as ws:
            client = Client(ws)
            hello = await client.until(lambda e: e["type"] == "session.created", 10, "session.created")
            assert {c["id"]: c["node"] for c in hello["cameras"]} == OWNERS
            assert all(c["state"] != "unavailable" for c in hello["cameras"]), hello["cameras"]

            # four questions, one per camera, at once: four answers, each from its camera's node
            answers = await asyncio.gather(*(client.ask(f"q-{cam}", cam) for cam in OWNERS))
            assert [a_["type"] for a_ in answers] == ["response.done"] * 4, answers
            assert all(a_["status"] == "completed" and a_["text"] for a_ in answers), answers
            created = [e for e in client.events if e["type"] == "response.created"]
            assert sorted(e["camera"] for e in created) == sorted(OWNERS)
            if HAVE_CHROMIUM:
                await _page_shows_every_camera(gw_port)

            # kill -9 node b: its cameras become unavailable; a's keep answering
            b.kill9()
            killed = time.monotonic()
            for cam in ("gate", "hall"):
                await client.until(
                    lambda e, cam=cam: (
                        e["type"] == "camera.state" and e["camera"] == cam and e["state"] == "unavailable"
                    ),
                    1.5 * KEEPALIVE_S + 3,
                    f"{cam} unavailable",
                )
            t0 = time.monotonic()
            refused = await client.ask("q-gate-down", "gate", within=5)
            assert refused["type"] == "error" and refused["code"] == "camera_unavailable", refused
            assert time.monotonic() - t0 < 1.0, "an unavailable camera must be refused at once"
            assert (await client.ask("q-door-2", "door"))["status"] == "completed"
            # the broker's last will makes it official: node b offline, health degraded
            h = await health_until(
                gw_port, lambda h: not h["nodes"]["b"]["online"], 1.5 * KEEPALIVE_S + 5, "node b offline"
            )
            assert time.monotonic() - killed < 1.5 * KEEPALIVE_S + 5
            assert h["status"] == "degraded"
            assert {c for c, v in h["cameras"].items() if not v["available"]} == {"gate", "hall"}
            owners, avail = await retained_directory(broker.port, prefix)
            assert avail == {"a": b"online", "b": b"offline"}

            # restart b: its cameras come back by themselves, the same client asks them again
            procs[1] = b = node(cfg, "b")
            await asyncio.to_thread(b.port)
            for cam in ("gate", "hall"):
                await client.until(
                    lambda e, cam=cam: (
                        e["type"] == "camera.state" and e["camera"] == cam and e["state"] != "unavailable"
                    ),
                    90,
                    f"{cam} back",
                )
            back = await asyncio.gather(client.ask("q-gate-3", "gate"), client.ask("q-hall-3", "hall"))
            assert [x.get("status") for x in back] == ["completed", "completed"], back
            await health_until(gw_port, lambda h: h["status"] == "ok", 30, "gateway health ok again")
            await client.close()
    finally:
        codes = [p.stop() for p in procs]
    assert codes[2] == 0, "".join(gw.lines[-30:])
