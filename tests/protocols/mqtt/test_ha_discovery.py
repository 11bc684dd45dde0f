"""Home Assistant MQTT discovery: the payloads (pure), then the bridge against a real Mosquitto broker, over the
daemon's real Service and model worker (echo backend: tests/pipeline.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import pytest

from livesight.config import MQTTConfig, ReconnectConfig
from livesight.protocols.contract.api import JpegImage, ServiceAPI
from livesight.protocols.mqtt import ha_discovery as ha
from livesight.protocols.mqtt.bridge import MQTTBridge
from tests.mosquitto import Mosquitto
from tests.pipeline import Pipeline, pipeline

FAST = ReconnectConfig(initial_s=0.1, max_s=0.5, multiplier=2.0, jitter=0.2)
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
_n = itertools.count(1)


def check_payload(component: str, payload: dict[str, Any]) -> None:
    """What HA needs to create the entity: its component's keys, a unique id, a device block, availability."""
    for key in ha.REQUIRED[component]:
        assert payload.get(key) not in (None, "", []), (component, key)
    assert payload["unique_id"] and payload["name"]
    dev = payload["device"]
    assert dev["identifiers"] and all(dev[k] for k in ("name", "manufacturer", "model", "sw_version"))
    assert payload["availability"][0]["topic"].endswith("/available")
    for key, value in payload.items():
        if key.endswith("_topic"):
            assert "+" not in value and "#" not in value, (key, value)


# ---- pure ---------------------------------------------------------------------------------------------------


def test_camera_and_watch_payloads() -> None:
    n = ha.Naming.of("homeassistant", "site/a")
    assert n.node_id == "site_a" and n.status_topic == "homeassistant/status"
    configs = ha.camera_configs(n, "front.door")
    assert sorted(t.split("/")[1] for t in configs) == ["event", "image", "sensor", "text"]
    for topic, payload in configs.items():
        component, node, object_id, last = topic.split("/")[1:]
        assert node == "site_a" and last == "config" and not set(object_id) - set(ha.safe_id(object_id))
        check_payload(component, payload)
        assert n.is_own_config(topic)
    by = {t.split("/")[1]: p for t, p in configs.items()}
    assert by["text"]["command_topic"] == "site/a/front.door/query"  # the bridge's question topic
    assert by["event"]["state_topic"] == "site/a/front.door/scene" and by["event"]["event_types"] == ["scene_change"]
    assert by["sensor"]["state_topic"] == by["sensor"]["json_attributes_topic"] == "site/a/front.door/text"
    assert by["image"]["image_topic"] == "site/a/front.door/image"
    topic, payload = ha.watch_config(n, "front.door", "sess_ab12:w1", "Tell me when a person enters " * 5)
    check_payload("binary_sensor", payload)
    assert topic.startswith("homeassistant/binary_sensor/site_a/front_door_watch_w") and len(payload["name"]) < 80
    assert payload["state_topic"] == n.watch_state_topic("front.door", "sess_ab12:w1")
    ids = [p["unique_id"] for p in configs.values()] + [payload["unique_id"]]
    assert len(set(ids)) == len(ids)
    assert ha.watch_key("sess_ab12:w1") != ha.watch_key("sess_ab12:w2")
    assert not n.is_own_config("homeassistant/sensor/other_node/x/config")
    body = json.loads(ha.text_payload(text="x" * 300, kind="query", camera="c", question="q?", wall_time=1.0))
    assert body["text"] == "x" * 300 and body["question"] == "q?"


# ---- a real broker ------------------------------------------------------------------------------------------


class Pictures:
    """A small ImageSource: every scene has the same tiny JPEG."""

    def latest_seq(self, camera: str) -> int | None:
        return 1

    async def latest_jpeg(self, camera: str, *, overlay: bool) -> JpegImage | None:
        return JpegImage(JPEG, 1, 0.0, time.time())

    async def scene_jpeg(self, camera: str, scene: int) -> bytes | None:
        return JPEG

    async def scenes(self, camera: str, *, limit: int) -> list[dict[str, Any]]:
        return []

    def counters(self) -> dict[str, int]:
        return {}


@asynccontextmanager
async def bridge_with_discovery(svc: ServiceAPI, port: int, prefix: str, dp: str) -> AsyncIterator[MQTTBridge]:
    cfg = MQTTConfig(enabled=True, port=port, prefix=prefix, reconnect=FAST, discovery=True, discovery_prefix=dp)
    bridge = MQTTBridge(svc, cfg, images=Pictures())
    assert bridge.ha is not None
    bridge.ha.sync_interval_s = 0.1
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        yield bridge
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class Watcher:
    """Every message on the subscribed topics, the latest per topic (retained or not)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.latest: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes]] = []

    async def until(self, pred: Callable[[], bool], within: float = 10, what: str = "condition") -> None:
        try:
            async with asyncio.timeout(within):
                while not pred():
                    m = await anext(aiter(self.client.messages))
                    self.latest[str(m.topic)] = bytes(m.payload)  # type: ignore[arg-type]
                    self.log.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
        except TimeoutError:
            raise AssertionError(f"{what} not seen within {within} s; latest: {sorted(self.latest)}") from None

    def configs(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(p) for t, p in self.latest.items() if t.endswith("/config") and p}


async def retained(port: int, topic_filter: str, settle: float = 0.5) -> dict[str, bytes]:
    """What a newcomer (Home Assistant starting) finds retained on the broker."""
    out: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe(topic_filter, qos=1)
        try:
            async with asyncio.timeout(settle):
                async for m in c.messages:
                    if m.retain and m.payload:
                        out[str(m.topic)] = bytes(m.payload)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return out


@pytest.fixture
async def pipe() -> AsyncIterator[Pipeline]:
    p = pipeline(["cam1", "cam2"]).start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.mark.mqtt
async def test_discovery_against_mosquitto(broker: Mosquitto, pipe: Pipeline) -> None:
    k = next(_n)
    prefix, dp = f"t{os.getpid()}/{k}", f"ha{os.getpid()}x{k}"
    node = ha.safe_id(prefix)
    svc = pipe.service
    # a retained leftover of an earlier run (a camera since removed from the config)
    leftover = f"{dp}/sensor/{node}/gone_message/config"
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.publish(leftover, b'{"name": "old"}', qos=1, retain=True)

    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.subscribe(f"{dp}/#", qos=1)
        await c.subscribe(f"{prefix}/#", qos=1)
        w = Watcher(c)
        async with bridge_with_discovery(svc, broker.port, prefix, dp) as bridge:
            assert bridge.ha is not None
            # every camera's entities, each with what HA requires; the leftover cleared
            await w.until(lambda: len(w.configs()) == 8 and w.latest.get(leftover) == b"", what="8 configs")
            for topic, payload in w.configs().items():
                check_payload(topic.split("/")[1], payload)
            assert {p["device"]["name"] for p in w.configs().values()} == {"livesight cam1", "livesight cam2"}

            # a watch: its binary_sensor appears, OFF; ON while it holds (the model answered yes at a scene change),
            # OFF again when it answers no; removed → config and state cleared
            svc.add_watch(camera="cam2", text="Tell me when a person enters.", watch_id="sess_1:w1")
            wtopic, _ = ha.watch_config(bridge.ha.naming, "cam2", "sess_1:w1", "x")
            state = bridge.ha.naming.watch_state_topic("cam2", "sess_1:w1")
            await w.until(lambda: wtopic in w.configs() and w.latest.get(state) == b"OFF", what="watch entity")
            check_payload("binary_sensor", w.configs()[wtopic])
            pipe.watch_hit("sess_1:w1", "yes, a person")
            await w.until(lambda: w.latest.get(state) == b"ON", what="watch ON")
            pipe.watch_hit("sess_1:w1", "no, nobody")
            await w.until(lambda: w.latest.get(state) == b"OFF", what="watch OFF")
            svc.remove_watch("sess_1:w1")
            await w.until(lambda: w.latest.get(wtopic) == b"" and w.latest.get(state) == b"", what="watch removed")

            # a question typed into the text entity (HA publishes it on the command topic) is answered
            ask_topic = w.configs()[f"{dp}/text/{node}/cam1_ask/config"]["command_topic"]
            await c.publish(ask_topic, b"Is anyone at the door?", qos=1)
            text_topic = f"{prefix}/cam1/text"
            await w.until(lambda: text_topic in w.latest, what="sensor state")
            body = json.loads(w.latest[text_topic])
            assert body["text"] == "I hold 0 frames (0 visual tokens). You asked: Is anyone at the door?"
            assert body["kind"] == "query" and pipe.backend.asked[-1] == ("cam1", "Is anyone at the door?")
            assert any(t.startswith(f"{prefix}/cam1/answer/") for t, _ in w.log)

            # a scene change: the image entity gets the picture, the event entity's topic the scene
            pipe.scene("cam1", 5)
            await w.until(lambda: w.latest.get(f"{prefix}/cam1/image") == JPEG, what="image")
            # a proactive message updates the sensor
            pipe.proactive("a cat crosses the yard", camera="cam2", scene=6)
            await w.until(lambda: b"a cat" in w.latest.get(f"{prefix}/cam2/text", b""), what="proactive text")

            # Home Assistant restarts: its birth message makes every config be published again
            before = len([t for t, _ in w.log if t.endswith("/config")])
            await c.publish(f"{dp}/status", b"online", qos=1)
            await w.until(
                lambda: len([t for t, _ in w.log if t.endswith("/config")]) >= before + 8, what="re-published"
            )
            assert bridge.ha.counters.republished == 1

    # what HA finds on the broker afterwards: exactly the cameras' entities, nothing left over
    found = await retained(broker.port, f"{dp}/#")
    n = ha.Naming.of(dp, prefix)
    assert set(found) == set(ha.camera_configs(n, "cam1")) | set(ha.camera_configs(n, "cam2"))
