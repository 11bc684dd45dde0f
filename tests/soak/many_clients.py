"""50 concurrent WebSocket clients, 5 of which never read but keep sending (a stuck script): the readers keep
receiving, the pipeline keeps its frame rate, a question is still answered quickly, and the stalled clients are
dropped — when their bounded send queue is full, or when they leave the server's pings unanswered first (their
socket buffers still absorbing the events) — and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import time
from collections import Counter

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.soak.common import Result, app_running, ask, config_dict, hello, make_config

STATS_S = 0.1


def _small_socket(port: int) -> socket.socket:
    """A socket with a tiny receive buffer: a client that does not read fills it after a few KB."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))
    return s


async def _pipeline_fps(handles, seconds: float) -> float:
    k = handles.service.counters
    before = sum(c.frames_encoded + c.encoder_skipped for c in k.values())
    await asyncio.sleep(seconds)
    return (sum(c.frames_encoded + c.encoder_skipped for c in k.values()) - before) / seconds


async def _ttfts(url: str, n: int) -> list[float]:
    out = []
    async with connect(url) as ws:
        await hello(ws)
        for i in range(n):
            ev = await ask(ws, f"t{i}")
            out.append(float(ev["ttft_ms"]))
    return out


async def run(quick: bool) -> Result:
    readers_n, stalled_n = (18, 2) if quick else (45, 5)
    window = 15.0 if quick else 60.0
    grace = 45.0 if quick else 120.0
    res = Result("many_clients", f"{readers_n + stalled_n} concurrent clients, {stalled_n} of which never read")
    cams = [{"id": f"cam{i}", "source": "builtin:demo", "sample_fps": 2} for i in range(2)]
    cfg = make_config(config_dict(cams, server={"stats_interval_s": STATS_S, "client_queue": 16}))
    async with app_running(cfg) as (_, handles):
        url = f"ws://127.0.0.1:{handles.port}"
        await asyncio.sleep(2.0)  # warm-up
        base_fps = await _pipeline_fps(handles, 5.0)
        base_ttft = statistics.median(await _ttfts(url, 5))
        counts: Counter[int] = Counter()
        closes: Counter[str] = Counter()
        stalled: list[ClientConnection] = []
        for _ in range(stalled_n):
            ws = await connect(url, sock=_small_socket(handles.port), max_queue=1, compression=None, close_timeout=1)
            stalled.append(ws)

        async def reader(i: int) -> None:
            async with connect(url) as ws:
                async for raw in ws:
                    if json.loads(raw)["type"] == "stats":
                        counts[i] += 1

        async def chatter(ws: ClientConnection) -> None:
            """A stalled client that keeps sending (each message earns an `error` reply it never reads)."""
            msg = json.dumps({"type": "query.cancel", "id": "nothing"})
            try:
                while True:
                    await ws.send(msg)
                    await asyncio.sleep(0.002)
            except ConnectionClosed:
                dropped_at.append(time.monotonic() - t0)

        dropped_at: list[float] = []
        t0 = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(reader(i), name=f"soak-reader-{i}") for i in range(readers_n)]
                chatters = [tg.create_task(chatter(ws), name=f"soak-stalled-{i}") for i, ws in enumerate(stalled)]
                load_fps_task = tg.create_task(_pipeline_fps(handles, window - 5), name="soak-fps")
                await asyncio.sleep(2.0)
                load_ttft = statistics.median(await _ttfts(url, 5))
                await asyncio.sleep(max(0.0, window - (time.monotonic() - t0)))
                for t in tasks:
                    t.cancel()
                # the kernel's send buffers for a stalled socket vary in size (autotuning): give the stalled
                # clients up to `grace` more seconds of sending before judging whether they were dropped
                _, pending = await asyncio.wait(chatters, timeout=grace)
                for t in pending:
                    t.cancel()
            load_fps = load_fps_task.result()
        finally:
            for ws in stalled:
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 0.01)  # learn whether the server closed it
                code = ws.close_code
                closes[str(code) if code is not None else "still open"] += 1
                await ws.close()
        dropped_slow = await asyncio.to_thread(metrics_dropped, handles.port)
    expected = window / STATS_S
    per_reader = [counts[i] for i in range(readers_n)]
    res.figures = {
        "clients": readers_n + stalled_n,
        "stalled_clients": stalled_n,
        "stats_per_reader_min": min(per_reader),
        "stats_per_reader_expected": int(expected),
        "pipeline_fps_alone": round(base_fps, 2),
        "pipeline_fps_with_clients": round(load_fps, 2),
        "ttft_ms_alone": round(base_ttft, 1),
        "ttft_ms_with_clients": round(load_ttft, 1),
        "stalled_clients_closed": dict(closes),
        "stalled_clients_dropped_after_s": [round(x, 1) for x in sorted(dropped_at)],
        "clients_dropped_slow_counted": dropped_slow,
    }
    res.check(
        min(per_reader) >= 0.7 * expected,
        f"every reader kept receiving stats (min {min(per_reader)} of ~{int(expected)})",
    )
    res.check(load_fps >= 0.8 * base_fps, f"pipeline {load_fps:.1f} frames/s with the clients vs {base_fps:.1f} alone")
    closed = closes.get("4000", 0) + closes.get("1006", 0)
    res.check(
        dropped_slow == closed == stalled_n,
        f"all {stalled_n} stalled clients were dropped and counted in /metrics ({dropped_slow})",
        f"stalled clients: {dict(closes)}, counted {dropped_slow}",
    )
    res.check(
        set(closes) <= {"4000", "1006"},
        f"stalled clients were closed: {dict(closes)} (4000 'client too slow' when the close frame gets through; "
        "1006 when their own buffers are full, as here: the server gives up on the closing handshake)",
    )
    res.lost.append("the stalled clients' undelivered events (by design: the pipeline never waits for a client)")
    return res


def metrics_dropped(port: int) -> int:
    """Clients dropped as too slow, as /metrics reports them (every reason)."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(sum(float(v) for v in re.findall(r"^livesight_ws_clients_dropped_total\{[^}]*\} (\S+)$", text, re.M)))
