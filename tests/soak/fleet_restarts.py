"""A fleet under fire: 3 nodes and 6 cameras on one Mosquitto behind one gateway (all real processes); nodes are
killed with SIGKILL and restarted at random while two clients on the gateway keep asking about random cameras."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from websockets.asyncio.client import ClientConnection, connect

from livesight.config import parse_config
from livesight.fleet.ownership import assignment
from tests.fleet.procs import Proc
from tests.mosquitto import Mosquitto
from tests.soak.common import Result, hello

NODES = ["n0", "n1", "n2"]
CAMERAS = [f"cam{i}" for i in range(6)]
KEEPALIVE_S = 2


def fleet_config(mqtt_port: int) -> dict[str, Any]:
    src = "lavfi:testsrc2=size=160x120:rate=5"
    return {
        "cameras": [{"id": c, "source": src, "sample_fps": 1} for c in CAMERAS],
        "model": {"preset": "tiny-random", "image_size": 112, "max_new_tokens": 4},
        "memory": {"token_budget": 1024, "database": None},
        "proactive": {"enabled": False},
        "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 2},
        "mqtt": {"enabled": True, "port": mqtt_port, "prefix": "soakfleet", "keepalive_s": KEEPALIVE_S,
                 "reconnect": {"initial_s": 0.2, "max_s": 1.0}},
        "fleet": {"nodes": NODES},
    }  # fmt: skip


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


async def _until_healthy(port: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        h = await asyncio.to_thread(_health, port)
        if h is not None and h.get("status") == "ok":
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"port {port} not healthy within {within} s")


@dataclass
class Tally:
    answered: int = 0
    refused: list[tuple[float, str]] = field(default_factory=list)  # (time, camera) of camera_unavailable
    failed: list[tuple[float, str]] = field(default_factory=list)  # answers cut by a node's death
    lost: list[str] = field(default_factory=list)  # no answer at all, or an unexpected error


async def _asker(url: str, name: str, tally: Tally, stop: asyncio.Event, rng: random.Random) -> None:
    async with connect(url, open_timeout=10) as ws:
        await hello(ws)
        i = 0
        while not stop.is_set():
            i += 1
            cam = rng.choice(CAMERAS)
            qid = f"{name}-{i}"
            await ws.send(json.dumps({"type": "query", "id": qid, "text": "anything new?", "camera": cam}))
            try:
                ev = await _final(ws, qid)
            except TimeoutError:
                tally.lost.append(f"{qid} ({cam}): no answer in 30 s")
                continue
            now = time.monotonic()
            if ev["type"] == "response.done" and ev["status"] == "completed":
                tally.answered += 1
            elif ev["type"] == "error" and ev["code"] == "camera_unavailable":
                tally.refused.append((now, cam))
                await asyncio.sleep(0.2)
            elif ev["type"] == "response.done" and ev["status"] == "failed":
                tally.failed.append((now, cam))
            else:
                tally.lost.append(f"{qid} ({cam}): {ev}")
            await asyncio.sleep(rng.uniform(0.05, 0.3))


async def _final(ws: ClientConnection, qid: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            ev = json.loads(await ws.recv())
            if ev.get("query_id") == qid and ev["type"] == "response.done":
                return ev
            if ev["type"] == "error" and ev.get("event_id") == qid:
                return ev


async def run(quick: bool) -> Result:
    kills = 1 if quick else 5
    res = Result(
        "fleet_restarts",
        f"3 nodes, 6 cameras, one gateway, one broker: a random node killed with SIGKILL and restarted {kills} "
        "times while 2 clients on the gateway ask about random cameras",
    )
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="livesight-soak-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        broker = Mosquitto(tmp)
        broker.start()
        cfg_dict = fleet_config(broker.port)
        owners = assignment(parse_config(cfg_dict))
        cfg = tmp / "fleet.yaml"
        cfg.write_text(yaml.safe_dump(cfg_dict))
        nodes = {n: Proc(["serve", "--config", str(cfg), "--node", n], n) for n in NODES}
        gw = Proc(["gateway", "--config", str(cfg), "--port", "0"], "gateway")
        down: list[tuple[str, float, float]] = []  # (node, killed at, its cameras answering again at)
        recovery: list[float] = []
        tally = Tally()
        t0 = time.monotonic()
        try:
            gw_port = await asyncio.to_thread(gw.port, 60)
            await _until_healthy(gw_port, 180)
            url = f"ws://127.0.0.1:{gw_port}"
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                askers = [tg.create_task(_asker(url, f"c{i}", tally, stop, rng), name=f"asker{i}") for i in range(2)]
                await asyncio.sleep(3)
                for _ in range(kills):
                    victim = rng.choice(NODES)
                    killed = time.monotonic()
                    await asyncio.to_thread(nodes[victim].kill9)
                    await asyncio.sleep(rng.uniform(2, 5))
                    nodes[victim] = Proc(["serve", "--config", str(cfg), "--node", victim], victim)
                    t_restart = time.monotonic()
                    await _until_answering(url, [c for c, o in owners.items() if o == victim], 180)
                    back = time.monotonic()
                    recovery.append(back - t_restart)
                    down.append((victim, killed, back))
                    await asyncio.sleep(rng.uniform(1, 3))
                await asyncio.sleep(2)
                stop.set()
                for t in askers:
                    await t
            final = await _ask_all(url)
        finally:
            for p in [*nodes.values(), gw]:
                p.stop()
            broker.stop()

    def while_down(t: float, cam: str) -> bool:  # between the kill and its cameras answering again (+0.5 s)
        return any(n == owners[cam] and k <= t <= b + 0.5 for n, k, b in down)

    refused_ok = all(while_down(t, c) for t, c in tally.refused)
    failed_ok = all(while_down(t, c) for t, c in tally.failed)
    res.figures = {
        "kills": kills,
        "victims": [n for n, _, _ in down],
        "questions": tally.answered + len(tally.refused) + len(tally.failed) + len(tally.lost),
        "answered": tally.answered,
        "refused_while_down": len(tally.refused),
        "failed_in_flight": len(tally.failed),
        "lost": len(tally.lost),
        "recovery_s_median": round(statistics.median(recovery), 2) if recovery else None,
        "recovery_s_max": round(max(recovery), 2) if recovery else None,
        "cameras_per_node": {n: sorted(c for c, o in owners.items() if o == n) for n in NODES},
    }
    res.check(not tally.lost, "no question was lost: each got an answer or an immediate refusal",
              f"{len(tally.lost)} question(s) lost: {tally.lost[:3]}")  # fmt: skip
    outside = [(round(t - t0, 2), c) for t, c in tally.refused if not while_down(t, c)]
    res.check(
        refused_ok,
        f"all {len(tally.refused)} refusals (`camera_unavailable`) were for a camera whose node was down",
        f"{len(outside)} refusal(s) outside their node's down time (s from start, camera): {outside[:5]}; "
        f"down: {[(n, round(k - t0, 2), round(b - t0, 2)) for n, k, b in down]}",
    )
    res.check(failed_ok, f"all {len(tally.failed)} answers cut short were on a node that was being killed")
    res.check(tally.answered > 0, f"{tally.answered} questions answered throughout")
    res.check(final == set(CAMERAS), "every camera answered through the same gateway at the end",
              f"cameras answering at the end: {sorted(final)}")  # fmt: skip
    res.lost.append(
        "answers in flight on a node at the moment it was killed (they end with response.done `failed`); questions "
        "to its cameras while it is down are refused at once, not queued"
    )
    return res


async def _until_answering(url: str, cameras: list[str], within: float) -> None:
    """Until each camera answers a question through the gateway (refusals while its node starts are retried)."""
    async with asyncio.timeout(within), connect(url, open_timeout=10) as ws:
        await hello(ws)
        for cam in cameras:
            for i in range(100_000):
                qid = f"probe-{cam}-{i}"
                await ws.send(json.dumps({"type": "query", "id": qid, "text": "back?", "camera": cam}))
                ev = await _final(ws, qid)
                if ev["type"] == "response.done" and ev["status"] == "completed":
                    break
                await asyncio.sleep(0.2)


async def _ask_all(url: str) -> set[str]:
    ok: set[str] = set()
    async with connect(url, open_timeout=10) as ws:
        await hello(ws)
        for cam in CAMERAS:
            qid = f"final-{cam}"
            await ws.send(json.dumps({"type": "query", "id": qid, "text": "still there?", "camera": cam}))
            ev = await _final(ws, qid)
            if ev["type"] == "response.done" and ev["status"] == "completed":
                ok.add(cam)
    return ok
