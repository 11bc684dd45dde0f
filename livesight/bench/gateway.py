"""The serving benchmarks: `livesight bench gateway` (below) and `livesight bench web` (`run_web`, at the end).

`livesight bench gateway`, in two parts:

1. **one real node**: what the gateway adds to a question's time to first token (direct vs gateway, same run). A real
   broker (Mosquitto, found on PATH), one real daemon (`livesight serve`, a fleet of one node, the tiny model on a live
   lavfi camera) and one real gateway (`livesight gateway`), each its own process on loopback. One client connection
   to the node and one to the gateway ask in strict alternation (direct, gateway, direct, …), so both see the same
   model, load and machine. Per question, measured at the client: `created_ms` (send → `response.created`: the daemon
   sends it as soon as the question is queued, the transport alone) and `ttft_ms` (send → first `response.delta`).
   The overhead is the median of the gateway's minus the median of the direct figures; `paired_ms` is the median of
   the differences of adjacent pairs (less sensitive to drift during the run).
2. **fleet scale** (bench/fleet/scale.py): 1,000 and 5,000 cameras on simulated nodes, 200 clients on the real
   gateway: its CPU and memory, `/healthz` latency, upstream connections per node, TTFT through it against direct.

Targets (issue 21): upstream connections per node = 1 (+1 while reconnecting) for any number of clients; at 5,000
cameras `/healthz` p95 ≤ 50 ms and gateway RSS ≤ 300 MiB; TTFT overhead through the gateway ≤ 5 ms median.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from livesight.bench.fleet.procs import Proc, free_port, mosquitto_binary
from livesight.errors import LivesightError

TARGET_MS = 5.0
_CONFIG = """
cameras:
  - {{id: cam, source: "lavfi:testsrc2=size=320x240:rate=10", sample_fps: 1}}
model: {{preset: tiny-random, max_new_tokens: 4, device: {device}}}
memory: {{token_budget: 2048, database: null}}
proactive: {{enabled: false}}
server: {{host: 127.0.0.1, port: 0, stats_interval_s: 5}}
mqtt: {{enabled: true, port: {mqtt}, prefix: bench, keepalive_s: 5}}
fleet: {{nodes: [n1]}}
"""


async def _ask(ws: ClientConnection, qid: str) -> tuple[float, float, float | None]:
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "query", "id": qid, "text": "What do you see?"}))
    created = first = None
    server_ttft = None
    async with asyncio.timeout(60):
        while True:
            e = json.loads(await ws.recv())
            if e.get("query_id") != qid:
                continue
            now = time.perf_counter()
            if e["type"] == "response.created" and created is None:
                created = now
            elif e["type"] == "response.delta" and first is None:
                first = now
            elif e["type"] == "response.done":
                server_ttft = e.get("ttft_ms")
                break
            elif e["type"] == "error":
                raise LivesightError(f"bench gateway: {e}")
    assert created is not None and first is not None
    return (created - t0) * 1000, (first - t0) * 1000, server_ttft


async def _measure(node_port: int, gw_port: int, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("direct_created", "gw_created", "direct_ttft", "gw_ttft", "model")}
    async with connect(f"ws://127.0.0.1:{node_port}") as direct, connect(f"ws://127.0.0.1:{gw_port}") as gw:
        for ws in (direct, gw):
            json.loads(await ws.recv())  # session.created
        for i in range(-3, n):  # 3 warm-up pairs
            for name, ws in (("direct", direct), ("gw", gw)):
                created, ttft, server = await _ask(ws, f"{name}{i + 3}")
                if i >= 0:
                    out[f"{name}_created"].append(created)
                    out[f"{name}_ttft"].append(ttft)
                    if server is not None:
                        out["model"].append(float(server))
                await asyncio.sleep(0.05)
    return out


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read()).get("status") == "ok"
    except OSError:
        return False


async def _run(mosquitto: str, n: int, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gw-") as tmp_s:
        tmp = Path(tmp_s)
        mqtt_port = free_port()
        (tmp / "mosquitto.conf").write_text(
            f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        (tmp / "fleet.yaml").write_text(_CONFIG.format(mqtt=mqtt_port, device=device))
        py = [sys.executable, "-m", "livesight"]
        procs = [Proc([mosquitto, "-c", str(tmp / "mosquitto.conf")], tmp / "mosquitto.log")]
        try:
            await asyncio.sleep(0.3)
            procs.append(Proc([*py, "serve", "--config", str(tmp / "fleet.yaml"), "--node", "n1"], tmp / "node.log"))
            procs.append(Proc([*py, "gateway", "--config", str(tmp / "fleet.yaml"), "--port", "0"], tmp / "gw.log"))
            node_port = int((await procs[1].wait_line(r"listening on ws://127\.0\.0\.1:(\d+)", 120)).group(1))
            gw_port = int((await procs[2].wait_line(r"listening on ws://127\.0\.0\.1:(\d+)", 60)).group(1))
            deadline = time.monotonic() + 120
            while not (await asyncio.to_thread(_ready, node_port) and await asyncio.to_thread(_ready, gw_port)):
                if time.monotonic() > deadline:
                    raise LivesightError("bench gateway: the node or the gateway never became ready")
                await asyncio.sleep(0.3)
            samples = await _measure(node_port, gw_port, n)
        finally:
            for p in reversed(procs):
                p.stop()
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    pairs_ttft = [g - d for d, g in zip(samples["direct_ttft"], samples["gw_ttft"], strict=True)]
    pairs_created = [g - d for d, g in zip(samples["direct_created"], samples["gw_created"], strict=True)]
    overhead = med["gw_ttft"] - med["direct_ttft"]
    result = {
        "questions_each": n,
        "direct_ttft_ms_median": round(med["direct_ttft"], 2),
        "gateway_ttft_ms_median": round(med["gw_ttft"], 2),
        "ttft_overhead_ms": round(overhead, 2),
        "ttft_overhead_paired_ms": round(statistics.median(pairs_ttft), 2),
        "direct_created_ms_median": round(med["direct_created"], 2),
        "gateway_created_ms_median": round(med["gw_created"], 2),
        "created_overhead_paired_ms": round(statistics.median(pairs_created), 2),
        "model_ttft_ms_median": round(med.get("model", float("nan")), 2),
        "target_ms": TARGET_MS,
        "meets_target": overhead <= TARGET_MS,
        "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
    }
    return result


SCALE_POINTS = ((1000, 200), (5000, 200))  # (cameras, clients)
QUICK_POINTS = ((200, 20),)
HEALTHZ_P95_TARGET_MS = 50.0
RSS_TARGET_MIB = 300.0


def run(out: Path, *, quick: bool = False, device: str = "cpu", shape: str = "tiny") -> dict[str, Any]:
    from livesight.bench.fleet.scale import run_point

    if shape != "tiny":
        raise LivesightError("bench gateway: only the tiny model (the gateway's cost does not depend on the model)")
    real = asyncio.run(_run(mosquitto_binary("gateway"), 10 if quick else 40, device))
    points = [
        run_point(cameras=c, clients=k, window_s=4 if quick else 20, ttft_pairs=10 if quick else 40)
        for c, k in (QUICK_POINTS if quick else SCALE_POINTS)
    ]
    rows: list[dict[str, Any]] = [
        {
            "setup": "1 real node (tiny model), 1 client each way",
            "TTFT direct ms": real["direct_ttft_ms_median"],
            "TTFT through the gateway ms": real["gateway_ttft_ms_median"],
            "TTFT overhead ms (paired)": real["ttft_overhead_paired_ms"],
        }
    ]
    for p in points:
        rows.append(
            {
                "setup": f"{p['cameras']:,} cameras on {p['nodes']} simulated nodes, {p['clients']} clients",
                "upstream connections per node (max)": p["links_per_node_max"],
                "gateway CPU (cores)": p["gateway_cpu_cores"],
                "gateway RSS MiB (peak)": f"{p['gateway_rss_mib']} ({p['gateway_rss_peak_mib']})",
                "/healthz p50 / p95 ms": f"{p['healthz_ms_p50']} / {p['healthz_ms_p95']}",
                "TTFT direct ms": p["direct_ttft_ms_median"],
                "TTFT through the gateway ms": p["gateway_ttft_ms_median"],
                "TTFT overhead ms (paired)": p["ttft_overhead_paired_ms"],
            }
        )
    biggest = points[-1]
    checks = {
        "upstream connections per node <= 1 (+1 reconnecting)": all(p["links_per_node_max"] <= 2 for p in points),
        f"/healthz p95 <= {HEALTHZ_P95_TARGET_MS} ms at {biggest['cameras']} cameras": biggest["healthz_ms_p95"]
        <= HEALTHZ_P95_TARGET_MS,
        f"gateway RSS <= {RSS_TARGET_MIB} MiB at {biggest['cameras']} cameras": biggest["gateway_rss_peak_mib"]
        <= RSS_TARGET_MIB,
        f"TTFT overhead <= {TARGET_MS} ms median": all(x["ttft_overhead_ms"] <= TARGET_MS for x in (real, *points)),
    }
    notes = [
        "Targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()) + ".",
        "Fleet scale: each simulated node (bench/fleet/fake_nodes.py) speaks the node protocol for 64 cameras: stats "
        f"every 2 s in the daemon's shape, a scene change per camera every {points[-1]['scene_every_s']:.0f} s on "
        f"average, answers at once; each of the clients (bench/fleet/crowd.py) reads everything and asks a random "
        f"camera every {points[-1]['ask_every_s']:.0f} s on average. The gateway's config lists every node's address "
        "and has no model section. CPU and RSS are the gateway process's (from /proc) over a "
        f"{points[-1]['window_s']:.0f} s window; /healthz is requested with the token (the whole body: "
        f"{biggest['healthz_bytes']:,} bytes at {biggest['cameras']:,} cameras) every 0.2 s meanwhile.",
        "TTFT at fleet scale: the same simulated node asked directly and through the gateway in strict alternation "
        "while the crowd runs (a simulated node answers at once: the figures are the transport's).",
    ]
    return {
        "summary": rows,
        "notes": notes,
        "targets": checks,
        "real_node": real,
        "scale": points,
    }


# ---- `livesight bench web [--baseline DIR]`: the web face, this checkout against another, in one run --------------
#
# One daemon per checkout (`livesight serve` run with PYTHONPATH=<checkout>: the echo backend, so the model is beside
# the point, on a live lavfi camera), side by side on loopback; rounds alternate which daemon is measured first.
# Per round and daemon, at the client:
#
# - fan-out: 50 WebSocket clients connected; each `stats` event (published every 0.25 s) is timed from its
#   `wall_time` (set when the daemon built it) to its arrival at each client: the median over clients and the
#   slowest client (the fan-out's completion);
# - live view: GET /api/cameras/cam/latest.jpg on a new connection (as a polling page does), request → last byte;
# - TTFT through /v1: POST /v1/chat/completions with stream true, request → the chunk with the first word (the
#   role chunk sent at response.created does not count).

_WEB_CONFIG = """
cameras:
  - {id: cam, source: "lavfi:testsrc2=size=640x360:rate=10", sample_fps: 2}
model: {backend: echo, max_new_tokens: 16}
memory: {database: null}
proactive: {enabled: false}
server: {host: 127.0.0.1, port: 0, stats_interval_s: 0.25, client_queue: 256}
"""
FANOUT_CLIENTS = 50


async def _fanout(port: int, events: int) -> list[tuple[float, float]]:
    """(median, slowest) delivery latency in ms of `events` stats events to FANOUT_CLIENTS clients."""
    clients = [await connect(f"ws://127.0.0.1:{port}", compression=None) for _ in range(FANOUT_CLIENTS)]
    try:
        arrivals: dict[float, list[float]] = {}

        async def read(ws: ClientConnection) -> None:
            while True:
                e = json.loads(await ws.recv())
                if e.get("type") == "stats":
                    arrivals.setdefault(e["wall_time"], []).append(time.time())

        readers = [asyncio.create_task(read(ws), name=f"bench-web:client{i}") for i, ws in enumerate(clients)]
        try:
            async with asyncio.timeout(30 + events):
                while sum(1 for v in arrivals.values() if len(v) == FANOUT_CLIENTS) < events + 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        full = sorted((k, v) for k, v in arrivals.items() if len(v) == FANOUT_CLIENTS)[1:-1][:events]  # whole ones
        out = []
        for sent, got in full:
            lat = sorted((g - sent) * 1000 for g in got)
            out.append((statistics.median(lat), lat[-1]))
        return out
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def _http_ms(port: int, request: bytes, first: bytes | None = None) -> float:
    """Request → the first occurrence of `first` in the answer (None: the end of the answer), in ms."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        async with asyncio.timeout(30):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
                if first is not None and first in data:
                    break
        if not data.startswith(b"HTTP/1.1 200"):
            raise LivesightError(f"bench web: {request.split(b' ')[1]!r} answered {data[:80]!r}")
        return (time.perf_counter() - t0) * 1000
    finally:
        writer.close()


def _live_view_request(port: int) -> bytes:
    return f"GET /api/cameras/cam/latest.jpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def _chat_request(port: int) -> bytes:
    body = json.dumps({"model": "cam", "messages": [{"role": "user", "content": "say: a b c"}], "stream": True})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


async def _web_round(port: int, n: int, events: int) -> dict[str, list[float]]:
    fan = await _fanout(port, events)
    live = [await _http_ms(port, _live_view_request(port)) for _ in range(n)]
    ttft = [await _http_ms(port, _chat_request(port), first=b'"delta":{"content":"') for _ in range(n)]
    return {
        "fanout_median_ms": [m for m, _ in fan],
        "fanout_slowest_ms": [x for _, x in fan],
        "live_view_ms": live,
        "v1_ttft_ms": ttft,
    }


async def _run_web(trees: dict[str, Path], rounds: int, n: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "web.yaml").write_text(_WEB_CONFIG)
        procs: dict[str, Proc] = {}
        ports: dict[str, int] = {}
        try:
            for name, tree in trees.items():
                env_path = str(tree)
                argv = [sys.executable, "-m", "livesight", "serve", "--config", str(tmp / "web.yaml"), "--port", "0"]
                procs[name] = Proc(argv, tmp / f"{name}.log", env={"PYTHONPATH": env_path})
            for name, proc in procs.items():
                ports[name] = int((await proc.wait_line(r"listening on ws://127\.0\.0\.1:(\d+)", 120)).group(1))
            for name, port in ports.items():
                deadline = time.monotonic() + 120
                while not await asyncio.to_thread(_ready, port):
                    if time.monotonic() > deadline:
                        raise LivesightError(f"bench web: the {name} daemon never became ready")
                    await asyncio.sleep(0.3)
                await _web_round(port, 3, 2)  # warm-up
            samples: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
            for r in range(rounds):
                order = list(trees) if r % 2 == 0 else list(reversed(trees))
                for name in order:
                    for k, v in (await _web_round(ports[name], n, events)).items():
                        samples[name].setdefault(k, []).extend(v)
        finally:
            for p in procs.values():
                p.stop()
    summary: dict[str, Any] = {}
    for name, per in samples.items():
        summary[name] = {
            k: {"median": round(statistics.median(v), 2), "p90": round(_p90(v), 2), "n": len(v)} for k, v in per.items()
        }
    result: dict[str, Any] = {"trees": {k: str(v) for k, v in trees.items()}, "figures": summary}
    if "baseline" in summary:
        result["ratio_median"] = {
            k: round(summary["this"][k]["median"] / summary["baseline"][k]["median"], 3) for k in summary["this"]
        }
    result["samples"] = {n_: {k: [round(x, 3) for x in v] for k, v in per.items()} for n_, per in samples.items()}
    return result


def _p90(v: list[float]) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(0.9 * len(s)))]


def run_web(
    out: Path, *, quick: bool = False, device: str = "cpu", shape: str = "tiny", baseline: str | None = None
) -> dict[str, Any]:
    this = Path(__file__).resolve().parents[2]
    trees = {"this": this}
    if baseline is not None:
        base = Path(baseline).resolve()
        if not (base / "livesight" / "__init__.py").is_file():
            raise LivesightError(f"bench web: --baseline {baseline}: no livesight package there")
        trees["baseline"] = base
    result = asyncio.run(_run_web(trees, rounds=2 if quick else 6, n=5 if quick else 20, events=4 if quick else 12))
    lines = []
    for k in ("fanout_median_ms", "fanout_slowest_ms", "live_view_ms", "v1_ttft_ms"):
        cells = [f"{name} {result['figures'][name][k]['median']} ms" for name in trees]
        ratio = f" (ratio {result['ratio_median'][k]})" if "ratio_median" in result else ""
        lines.append(f"{k}: " + ", ".join(cells) + ratio)
    result["summary"] = "; ".join(lines)
    return result
