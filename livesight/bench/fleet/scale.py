"""The gateway at fleet scale: thousands of cameras on simulated nodes, hundreds of clients, one real gateway.

    point = run_point(cameras=5000, clients=200, window_s=20)

Processes (loopback, each its own): Mosquitto; the simulated nodes (fake_nodes.py: 64 cameras a node, each node on its
own port, announced over MQTT and signed with the fleet's credential, sending stats and scene changes, answering at
once); the real `livesight gateway`, whose config lists every camera and every node's address (`fleet.nodes` entries:
the trusted way) and has no `model` section; the crowd (crowd.py: `clients` WebSocket clients reading everything, each
asking a random camera now and then). This driver stays idle but for what it measures, during `window_s` once the crowd
is connected:

- the gateway's CPU (user + system, from /proc, in cores) and memory (RSS at the end, and its peak);
- `GET /healthz` with the token (the whole body: every camera and node), request → last byte, every HEALTH_EVERY_S;
- upstream connections per node: the most /fleet connections any node ever had open at once (the nodes count them);
- the time to first token through the gateway against directly to a node (the same simulated node, so the difference
  is the gateway's), asked in strict alternation, `ttft_pairs` pairs; both measured at this client.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from livesight.bench.fleet.procs import Proc, free_port, mosquitto_binary
from livesight.errors import LivesightError

CAMERAS_PER_NODE = 64
HEALTH_EVERY_S = 0.2
TOKEN = "bench-gateway-clients"
FLEET_TOKEN = "bench-fleet-credential-0123456789"
PREFIX = "benchfleet"


def _gateway_config(nodes: dict[str, dict[str, Any]], mqtt_port: int, stats_interval_s: float) -> str:
    """YAML (JSON is YAML) with no model section: what a gateway needs and nothing else."""
    cams = [{"id": c, "source": "builtin:demo", "node": n} for n, spec in nodes.items() for c in spec["cameras"]]
    cfg = {
        "cameras": cams,
        "server": {"host": "127.0.0.1", "port": 0, "auth_token": TOKEN, "stats_interval_s": stats_interval_s},
        "mqtt": {"enabled": True, "port": mqtt_port, "prefix": PREFIX},
        "fleet": {
            "nodes": [{"id": n, "url": f"ws://127.0.0.1:{spec['port']}"} for n, spec in nodes.items()],
            "node_token": FLEET_TOKEN,
        },
    }
    return json.dumps(cfg)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _memory_mib(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MiB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            got[key] = int(value.split()[0]) / 1024
    return round(got["VmRSS"], 1), round(got["VmHWM"], 1)


async def _get(port: int, path: str) -> tuple[float, int, int]:
    """(ms to the last byte, status, body bytes) of one GET with the gateway's token."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(30):
            data = await reader.read(-1)
        ms = (time.perf_counter() - t0) * 1000
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return ms, int(head.split(b" ", 2)[1]), len(body)


async def _health(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read(-1)
    finally:
        writer.close()
    return json.loads(data.partition(b"\r\n\r\n")[2] or b"{}")


async def _ask(ws: ClientConnection, qid: str, camera: str) -> tuple[float, float]:
    """(ms to response.created, ms to the first delta) of one question."""
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "query", "id": qid, "text": "What do you see?", "camera": camera}))
    created = first = None
    async with asyncio.timeout(30):
        while first is None:
            raw = await ws.recv()
            if f'"query_id":"{qid}"' not in raw:
                continue  # broadcasts (stats, scene changes) and other answers: not parsed
            e = json.loads(raw)
            now = time.perf_counter()
            if e["type"] == "response.created":
                created = now
            elif e["type"] == "response.delta":
                first = now
            elif e["type"] == "error":
                raise LivesightError(f"bench gateway: {e}")
    assert created is not None
    return (created - t0) * 1000, (first - t0) * 1000


async def _ttft(gw_port: int, node_port: int, camera: str, pairs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("direct_created", "gw_created", "direct_ttft", "gw_ttft")}
    async with (
        connect(f"ws://127.0.0.1:{node_port}/", compression=None, max_size=2**24) as direct,
        connect(f"ws://127.0.0.1:{gw_port}/?token={TOKEN}", compression=None, max_size=2**24) as gw,
    ):
        for i in range(-3, pairs):  # 3 warm-up pairs
            for name, ws in (("direct", direct), ("gw", gw)):
                created, ttft = await _ask(ws, f"{name}{i + 3}", camera)
                if i >= 0:
                    out[f"{name}_created"].append(created)
                    out[f"{name}_ttft"].append(ttft)
                await asyncio.sleep(0.02)
    return out


def _pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)] if s else float("nan")


async def _point(
    tmp: Path,
    *,
    cameras: int,
    clients: int,
    window_s: float,
    scene_every_s: float,
    ask_every_s: float,
    stats_interval_s: float,
    ttft_pairs: int,
) -> dict[str, Any]:
    n_nodes = math.ceil(cameras / CAMERAS_PER_NODE)
    names = [f"c{i:05d}" for i in range(cameras)]
    nodes: dict[str, dict[str, Any]] = {
        f"n{k:03d}": {"cameras": names[k * CAMERAS_PER_NODE : (k + 1) * CAMERAS_PER_NODE]} for k in range(n_nodes)
    }
    mqtt_port = free_port()
    (tmp / "mosquitto.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    node_spec = {
        "mqtt_port": mqtt_port,
        "prefix": PREFIX,
        "token": FLEET_TOKEN,
        "stats_interval_s": stats_interval_s,
        "scene_every_s": scene_every_s,
        "status_file": str(tmp / "nodes.json"),
        "ports_file": str(tmp / "ports.json"),
        "nodes": nodes,
    }
    (tmp / "nodes-spec.json").write_text(json.dumps(node_spec))
    crowd_spec = {
        "url": "",
        "clients": clients,
        "cameras": names,
        "ask_every_s": ask_every_s,
        "status_file": str(tmp / "crowd.json"),
    }
    py = [sys.executable, "-m"]
    procs: list[Proc] = [Proc([mosquitto_binary("gateway"), "-c", str(tmp / "mosquitto.conf")], tmp / "mqtt.log")]
    try:
        await asyncio.sleep(0.3)
        fake = Proc([*py, "livesight.bench.fleet.fake_nodes", str(tmp / "nodes-spec.json")], tmp / "nodes.log")
        procs.append(fake)
        await fake.wait_line("fake nodes ready", 120)
        for name, port in _read(tmp / "ports.json").items():
            nodes[name]["port"] = port
        (tmp / "gateway.yaml").write_text(_gateway_config(nodes, mqtt_port, stats_interval_s))
        t_start = time.perf_counter()
        gw = Proc([*py, "livesight", "gateway", "--config", str(tmp / "gateway.yaml"), "--port", "0"], tmp / "gw.log")
        procs.append(gw)
        gw_port = int((await gw.wait_line(r"listening on ws://127\.0\.0\.1:(\d+)", 120)).group(1))
        deadline = time.monotonic() + 180
        while (await _health(gw_port)).get("status") != "ok":
            if time.monotonic() > deadline:
                raise LivesightError(f"bench gateway: {cameras} cameras: the gateway never became ok")
            await asyncio.sleep(0.2)
        ready_s = time.perf_counter() - t_start
        crowd_spec["url"] = f"ws://127.0.0.1:{gw_port}/?token={TOKEN}"
        (tmp / "crowd-spec.json").write_text(json.dumps(crowd_spec))
        crowd = Proc([*py, "livesight.bench.fleet.crowd", str(tmp / "crowd-spec.json")], tmp / "crowd.log")
        procs.append(crowd)
        deadline = time.monotonic() + 120
        while _read(tmp / "crowd.json").get("connected", 0) < clients:
            if time.monotonic() > deadline or crowd.proc.poll() is not None:
                raise LivesightError(f"bench gateway: the crowd did not connect: {_read(tmp / 'crowd.json')}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # settle: every client got its session.created and the first broadcasts
        crowd_before = _read(tmp / "crowd.json")
        load_before = os.getloadavg()[0]
        cpu0, t0 = _cpu_s(gw.pid), time.perf_counter()
        health_ms: list[float] = []
        health_bytes = 0
        while time.perf_counter() - t0 < window_s:
            ms, status, size = await _get(gw_port, "/healthz")
            if status != 200:
                raise LivesightError(f"bench gateway: /healthz answered {status}")
            health_ms.append(ms)
            health_bytes = size
            await asyncio.sleep(HEALTH_EVERY_S)
        cpu = (_cpu_s(gw.pid) - cpu0) / (time.perf_counter() - t0)
        load_after = os.getloadavg()[0]
        crowd_after = _read(tmp / "crowd.json")
        rss, rss_peak = _memory_mib(gw.pid)
        metrics_ms, _, metrics_bytes = await _get(gw_port, "/metrics")
        first_node = next(iter(nodes.values()))
        samples = await _ttft(gw_port, first_node["port"], first_node["cameras"][0], ttft_pairs)
        rss_after_ttft, rss_peak = _memory_mib(gw.pid)
        window = time.perf_counter() - t0
    finally:
        codes = [p.stop() for p in reversed(procs)]
    if codes[-3:] and any(c not in (0, -15) for c in codes[:2]):  # crowd, gateway
        raise LivesightError(f"bench gateway: a process failed (exit codes {codes}); logs in {tmp}")
    node_counts = _read(tmp / "nodes.json")
    crowd_end = _read(tmp / "crowd.json")
    med = {k: statistics.median(v) for k, v in samples.items()}
    pairs = [g - d for d, g in zip(samples["direct_ttft"], samples["gw_ttft"], strict=True)]
    after, before = crowd_after.get("messages", {}), crowd_before.get("messages", {})
    msgs = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {
        "cameras": cameras,
        "nodes": n_nodes,
        "clients": clients,
        "ready_s": round(ready_s, 1),
        "gateway_cpu_cores": round(cpu, 3),
        "gateway_rss_mib": rss,
        "gateway_rss_peak_mib": rss_peak,
        "gateway_rss_after_ttft_mib": rss_after_ttft,
        "healthz_ms_p50": round(statistics.median(health_ms), 2),
        "healthz_ms_p95": round(_pct(health_ms, 0.95), 2),
        "healthz_requests": len(health_ms),
        "healthz_bytes": health_bytes,
        "metrics_ms": round(metrics_ms, 2),
        "metrics_bytes": metrics_bytes,
        "links_per_node_max": max(c["links_max"] for c in node_counts.values()),
        "links_accepted_total": sum(c["links_accepted"] for c in node_counts.values()),
        "direct_ttft_ms_median": round(med["direct_ttft"], 2),
        "gateway_ttft_ms_median": round(med["gw_ttft"], 2),
        "ttft_overhead_ms": round(med["gw_ttft"] - med["direct_ttft"], 2),
        "ttft_overhead_paired_ms": round(statistics.median(pairs), 2),
        "crowd_messages_per_s": {k: round(v / window_s, 1) for k, v in msgs.items() if v},
        "crowd_asked": crowd_end.get("asked", 0),
        "crowd_answers": crowd_end.get("answers", 0),
        "crowd_refused": crowd_end.get("refused", 0),
        "crowd_dropped": crowd_end.get("dropped", 0),
        "window_s": round(window, 1),
        "machine_load_1min": [round(load_before, 2), round(load_after, 2)],  # every process, before / after
        "scene_every_s": scene_every_s,
        "ask_every_s": ask_every_s,
        "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()} | {"healthz_ms": health_ms},
    }


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_point(
    *,
    cameras: int,
    clients: int,
    window_s: float = 20.0,
    scene_every_s: float = 300.0,
    ask_every_s: float = 20.0,
    stats_interval_s: float = 2.0,
    ttft_pairs: int = 40,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        return asyncio.run(
            _point(
                Path(tmp),
                cameras=cameras,
                clients=clients,
                window_s=window_s,
                scene_every_s=scene_every_s,
                ask_every_s=ask_every_s,
                stats_interval_s=stats_interval_s,
                ttft_pairs=ttft_pairs,
            )
        )
