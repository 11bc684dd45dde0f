"""The MQTT bridge against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from livesight.config import MQTTConfig, RecallConfig, ReconnectConfig
from livesight.protocols.mqtt.bridge import MQTTBridge
from livesight.timeline.recall import Recaller
from livesight.types import CameraState, keyframe_url
from tests.helpers import eventually
from tests.mosquitto import MOSQUITTO, Mosquitto
from tests.pipeline import Pipeline, pipeline
from tests.timeline.conftest import close_store, open_store
from tests.timeline.plant import plant

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

FAST = ReconnectConfig(initial_s=0.1, max_s=0.5, multiplier=2.0, jitter=0.2)


@asynccontextmanager
async def running_bridge(pipe: Pipeline, port: int, prefix: str) -> AsyncIterator[MQTTBridge]:
    """The bridge over the daemon's real Service and model worker (echo backend: tests/pipeline.py)."""
    bridge = MQTTBridge(pipe.service, MQTTConfig(enabled=True, port=port, prefix=prefix, reconnect=FAST))
    pipe.start()
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        yield bridge
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pipe.stop()


@asynccontextmanager
async def listener(port: int, *topics: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", port) as c:
        for t in topics:
            await c.subscribe(t, qos=1)
        yield c


async def next_message(client: aiomqtt.Client, within: float = 10) -> tuple[str, bytes, bool]:
    async with asyncio.timeout(within):
        m = await anext(aiter(client.messages))
    return str(m.topic), bytes(m.payload), bool(m.retain)  # type: ignore[arg-type]


async def test_every_camera_state_is_published_on_connect(broker: Mosquitto, prefix: str) -> None:
    """A camera that failed before the bridge connected still gets its retained state (issue #12)."""
    pipe = pipeline()
    pipe.camera_state("cam1", CameraState.LIVE)
    pipe.camera_state("cam2", CameraState.FAILED)
    async with running_bridge(pipe, broker.port, prefix) as bridge:
        await eventually(lambda: bridge.counters.published >= 2, what="two states published")
        async with listener(broker.port, f"{prefix}/+/state") as c:
            got = {}
            for _ in range(2):
                topic, payload, retained = await next_message(c)
                assert retained
                got[topic] = json.loads(payload)["state"]
    assert got == {f"{prefix}/cam1/state": "live", f"{prefix}/cam2/state": "failed"}


async def test_availability_is_retained_online_then_offline(broker: Mosquitto, prefix: str) -> None:
    async with running_bridge(pipeline(), broker.port, prefix), listener(broker.port, f"{prefix}/available") as c:
        assert await next_message(c) == (f"{prefix}/available", b"online", True)
    async with listener(broker.port, f"{prefix}/available") as c:
        assert await next_message(c) == (f"{prefix}/available", b"offline", True)


async def test_a_clean_stop_leaves_no_camera_live(broker: Mosquitto, prefix: str) -> None:
    """After a clean stop the retained P/CAM/state (and, in a fleet, P/CAM/info) says `unavailable`: a consumer that
    reads a camera's state is not told a stopped daemon's camera is live (a node that dies: its will, as before)."""
    from livesight.fleet.topics import decode_camera_info
    from livesight.protocols.mqtt.fleet_announcer import FleetAnnouncer

    pipe = pipeline()
    key = "fleet-credential-0123456789"
    fleet = FleetAnnouncer(prefix, node="n1", url="ws://127.0.0.1:1", cameras=["cam1", "cam2"], key=key)
    bridge = MQTTBridge(pipe.service, MQTTConfig(enabled=True, port=broker.port, prefix=prefix), fleet=fleet)
    pipe.start()
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        await eventually(lambda: bridge.counters.published >= 2 and fleet.published >= 2, what="states published")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pipe.stop()
    got: dict[str, dict] = {}
    async with listener(broker.port, f"{prefix}/+/state", f"{prefix}/+/info", f"{prefix}/nodes/+/available") as c:
        for _ in range(5):
            topic, payload, retained = await next_message(c)
            assert retained
            got[topic] = {"raw": payload} if topic.endswith("available") else json.loads(payload)
    for cam in ("cam1", "cam2"):
        assert got[f"{prefix}/{cam}/state"]["state"] == "unavailable", got
        assert got[f"{prefix}/{cam}/state"]["reason"] == "the daemon stopped"
        info = decode_camera_info(json.dumps(got[f"{prefix}/{cam}/info"]).encode())
        assert info is not None and info.state == "unavailable" and info.sig is not None
    assert got[f"{prefix}/nodes/n1/available"] == {"raw": b"offline"}


async def test_a_node_re_announces_every_interval_fresh_and_counted(broker: Mosquitto, prefix: str) -> None:
    """In a fleet the node re-publishes every camera's signed info every fleet.announce_interval_s, each with a new
    issue time and the next count of its run (so a gateway can refuse a recorded copy: fleet/topics.py)."""
    from livesight.fleet.topics import decode_camera_info, verify_camera_info
    from livesight.protocols.mqtt.fleet_announcer import FleetAnnouncer

    pipe = pipeline()
    key = "fleet-credential-0123456789"
    fleet = FleetAnnouncer(prefix, node="n1", url="ws://127.0.0.1:1", cameras=["cam1"], key=key, interval_s=1.0)
    bridge = MQTTBridge(pipe.service, MQTTConfig(enabled=True, port=broker.port, prefix=prefix), fleet=fleet)
    pipe.start()
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        async with listener(broker.port, f"{prefix}/cam1/info") as c:
            infos = []
            async with asyncio.timeout(10):
                while len(infos) < 3:
                    _, payload, _ = await next_message(c)
                    info = decode_camera_info(payload)
                    assert info is not None and verify_camera_info(info, key)
                    infos.append(info)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pipe.stop()
    assert len({i.boot for i in infos}) == 1 and infos[0].boot == fleet.boot
    seqs, issued = [i.seq for i in infos], [i.issued for i in infos]
    assert seqs == sorted(set(seqs)) and issued == sorted(issued) and issued[-1] > issued[0], infos


async def test_questions_are_answered(broker: Mosquitto, prefix: str) -> None:
    async with running_bridge(pipeline(), broker.port, prefix), listener(broker.port, f"{prefix}/+/answer/+") as c:
        await c.publish(f"{prefix}/cam2/query", json.dumps({"id": "q1", "text": "what is here?"}), qos=1)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam2/answer/q1"
        ans = json.loads(payload)
        assert ans["type"] == "response.done" and ans["status"] == "completed" and ans["query_id"] == "q1"
        assert ans["text"].endswith("You asked: what is here?") and ans["camera"] == "cam2" and ans["kind"] == "query"
        assert ans["usage"] == {"prompt_tokens": 3, "completion_tokens": len(ans["text"].split())}
        assert ans["citations"] == []  # nothing recalled

        await c.publish(f"{prefix}/cam1/query", "is the door open?", qos=1)
        topic, payload, _ = await next_message(c)
        assert topic.startswith(f"{prefix}/cam1/answer/mqtt")
        assert json.loads(payload)["text"].endswith("You asked: is the door open?")

        await c.publish(f"{prefix}/garage/query", json.dumps({"id": "q2", "text": "hi"}), qos=1)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/garage/answer/q2"
        err = json.loads(payload)
        assert err["type"] == "error" and err["code"] == "unknown_camera" and err["event_id"] == "q2"

        await c.publish(f"{prefix}/cam1/query", '{"id": "q3", "text": ', qos=1)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam1/answer/error" and json.loads(payload)["code"] == "invalid_json"

        await c.publish(f"{prefix}/cam1/query", json.dumps({"id": "q4", "text": ""}), qos=1)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam1/answer/q4" and json.loads(payload)["code"] == "invalid_field"


async def test_an_answer_that_recalled_the_past_carries_its_citations(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    store = open_store(tmp_path / "ev.sqlite")
    pipe = pipeline()
    try:
        van = (await plant(store, time.time(), camera="cam2"))["van"]
        pipe.service.recaller = Recaller(store, RecallConfig(timezone="UTC"))
        async with running_bridge(pipe, broker.port, prefix), listener(broker.port, f"{prefix}/+/answer/+") as c:
            await c.publish(f"{prefix}/cam2/query", json.dumps({"id": "q9", "text": "10 minutes ago?"}), qos=1)
            topic, payload, _ = await next_message(c)
        ans = json.loads(payload)
        assert topic == f"{prefix}/cam2/answer/q9" and ans["status"] == "completed"
        assert [(x["id"], x["camera"], x["thumbnail"]) for x in ans["citations"]] == [
            (van.id, "cam2", keyframe_url(van.id, 0))
        ]
    finally:
        close_store(store)


async def test_events_are_published(broker: Mosquitto, prefix: str) -> None:
    pipe = pipeline()
    async with running_bridge(pipe, broker.port, prefix), listener(broker.port, f"{prefix}/#") as c:
        retained = {(await next_message(c))[:2] for _ in range(3)}  # retained: availability, each camera's state
        assert (f"{prefix}/available", b"online") in retained
        assert {t for t, _ in retained} == {f"{prefix}/available", f"{prefix}/cam1/state", f"{prefix}/cam2/state"}
        pipe.scene("cam1", 3)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam1/scene"
        assert json.loads(payload) | {"wall_time": 0} == {
            "type": "scene.change",
            "camera": "cam1",
            "scene": 3,
            "pts": 12.0,
            "wall_time": 0,
            "score": 4.2,
            "thumbnail": "/api/cameras/cam1/scenes/3.jpg",
        }
        pipe.proactive("a person walks in", camera="cam2", scene=4)
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam2/proactive"
        msg = json.loads(payload)
        assert msg["text"] == "a person walks in" and msg["scene"] == 4 and msg["kind"] == "proactive"
        pipe.service.add_watch(camera="cam1", text="a red car", watch_id="s1:w1")
        pipe.watch_hit("s1:w1", "yes, a red car")
        topic, payload, _ = await next_message(c)
        assert topic == f"{prefix}/cam1/watch" and json.loads(payload)["watch_id"] == "s1:w1"
        pipe.camera_state("cam2")
        topic, payload, retained = await next_message(c)
        assert topic == f"{prefix}/cam2/state" and json.loads(payload)["state"] == "reconnecting"
        async with listener(broker.port, f"{prefix}/cam2/state") as late:  # the camera state is retained
            topic, payload, retained = await next_message(late)
            assert retained and json.loads(payload)["state"] == "reconnecting"


async def test_reconnects_after_a_broker_restart(tmp_path: Path, prefix: str) -> None:
    b = Mosquitto(tmp_path)
    b.start()
    try:
        async with running_bridge(pipeline(), b.port, prefix) as bridge:
            assert bridge.counters.connects == 1
            await asyncio.to_thread(b.stop)
            await eventually(lambda: not bridge.connected.is_set(), within=10, what="disconnect noticed")
            await asyncio.sleep(0.5)  # a few failed attempts against the dead port
            h = bridge.health()  # what /healthz shows meanwhile
            assert h["state"] == "disconnected" and not h["connected"] and h["reason"]
            await asyncio.to_thread(b.start)
            await eventually(lambda: bridge.connected.is_set(), within=10, what="reconnected")
            assert bridge.counters.connects == 2 and bridge.counters.connection_failures >= 1
            assert bridge.health()["state"] == "connected" and bridge.health()["connected"]
            # persistence is off: the restarted broker forgot everything; the bridge said online again
            async with listener(b.port, f"{prefix}/available", f"{prefix}/+/answer/+") as c:
                assert await next_message(c) == (f"{prefix}/available", b"online", True)
                await c.publish(f"{prefix}/cam1/query", json.dumps({"id": "after", "text": "still there?"}), qos=1)
                topic, payload, _ = await next_message(c)
                assert topic == f"{prefix}/cam1/answer/after" and json.loads(payload)["status"] == "completed"
    finally:
        b.stop()


async def test_gives_up_after_the_configured_attempts(prefix: str) -> None:
    from tests.mosquitto import free_port

    cfg = MQTTConfig(
        enabled=True,
        port=free_port(),
        prefix=prefix,
        reconnect=ReconnectConfig(initial_s=0.05, max_s=0.05, jitter=0, attempts=2),
    )
    bridge = MQTTBridge(pipeline().service, cfg)
    async with asyncio.timeout(10):
        await bridge.run()  # returns: the bridge is off, the daemon keeps running
    # the first connection and 2 reconnect attempts, as a camera with the same setting
    assert bridge.counters.connection_failures == 3 and bridge.counters.connects == 0
    h = bridge.health()
    assert h["state"] == "gave_up" and h["reason"]  # /healthz: degraded, with the broker's error


async def test_last_will_says_offline_when_the_bridge_is_killed(broker: Mosquitto, prefix: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.protocols.mqtt.bridge_process",
        str(broker.port),
        prefix,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"connected"
        async with listener(broker.port, f"{prefix}/available") as c:
            assert await next_message(c) == (f"{prefix}/available", b"online", True)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert await next_message(c) == (f"{prefix}/available", b"offline", False)
        async with listener(broker.port, f"{prefix}/available") as c:
            assert await next_message(c) == (f"{prefix}/available", b"offline", True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
