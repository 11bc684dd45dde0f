"""A real Mosquitto broker stopped and restarted N times under the running daemon's MQTT bridge."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt

from tests.mosquitto import Mosquitto
from tests.soak.common import Result, app_running, config_dict, make_config


async def _online_then_answer(port: int, prefix: str, qid: str) -> tuple[float, float]:
    """Seconds until the bridge says `online`, then seconds for a question over MQTT to be answered."""
    t0 = time.monotonic()
    async with asyncio.timeout(60):
        while True:  # the broker may still be starting
            try:
                async with aiomqtt.Client("127.0.0.1", port) as c:
                    await c.subscribe(f"{prefix}/available", qos=1)
                    await c.subscribe(f"{prefix}/+/answer/+", qos=1)
                    async for m in c.messages:
                        if str(m.topic) == f"{prefix}/available" and m.payload == b"online":
                            break
                    online = time.monotonic() - t0
                    t1 = time.monotonic()
                    await c.publish(f"{prefix}/cam/query", json.dumps({"id": qid, "text": "what now?"}), qos=1)
                    async for m in c.messages:
                        if str(m.topic) == f"{prefix}/cam/answer/{qid}":
                            body = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                            if body.get("status") != "completed":
                                raise RuntimeError(f"answer not completed: {body}")
                            return online, time.monotonic() - t1
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def run(quick: bool) -> Result:
    n = 1 if quick else 5
    res = Result("broker_restarts", f"Mosquitto stopped and restarted {n} times while the MQTT bridge was connected")
    prefix = "soak"
    with tempfile.TemporaryDirectory(prefix="livesight-soak-") as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        cam = {"id": "cam", "source": "builtin:demo", "sample_fps": 1}
        mqtt = {
            "enabled": True,
            "port": broker.port,
            "prefix": prefix,
            "reconnect": {"initial_s": 0.2, "max_s": 2.0, "attempts": "forever"},
        }
        cfg = make_config(config_dict([cam], mqtt=mqtt))
        online_s: list[float] = []
        answer_s: list[float] = []
        try:
            async with app_running(cfg):
                o, a = await _online_then_answer(broker.port, prefix, "q0")
                for i in range(n):
                    await asyncio.to_thread(broker.stop)
                    await asyncio.sleep(1.0)  # the bridge fails to reconnect a few times meanwhile
                    await asyncio.to_thread(broker.start)
                    o, a = await _online_then_answer(broker.port, prefix, f"q{i + 1}")
                    online_s.append(o)
                    answer_s.append(a)
        finally:
            broker.stop()
    res.figures = {
        "restarts": n,
        "back_online_s_median": round(statistics.median(online_s), 2),
        "back_online_s_max": round(max(online_s), 2),
        "mqtt_answer_s_median": round(statistics.median(answer_s), 2),
    }
    res.check(len(online_s) == n, f"`{prefix}/available` said online again after each of {n} restarts")
    res.check(len(answer_s) == n, "a question over MQTT was answered after each restart")
    res.lost.append(
        "events published while the broker was down (MQTT QoS 1 to a broker without persistence: by design; "
        "the retained state and availability are re-published on reconnect)"
    )
    return res
