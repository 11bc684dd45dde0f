"""N fuzzed WebSocket messages from parallel clients (each under the per-client rate limit, so every message is
parsed): invalid JSON, binary frames, JSON that is not an object, unknown types, known types with wrong or hostile
field values, oversized frames. The daemon must answer with `error` events or close with the right code, never
crash, and answer a valid question afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from livesight.protocols.contract import events as ev
from tests.soak.common import Result, answered, app_running, config_dict, make_config, rss_mib

CLIENTS = 20
PER_CLIENT_RATE = 15.0  # messages/s, under the server's 20/s limit


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 2 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 2**63, 1e308, 3.5])
    if pick == 3:
        return rng.choice(["", " ", "q1", "cam", "x" * 2001, "a\x00b", "../../etc/passwd", "é" * 70, "<script>"])
    if pick == 4:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(30)))
    if pick == 5:
        return rng.random() * 1e6
    if pick == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(_value(rng, 2))[:10]: _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def message(rng: random.Random, max_bytes: int) -> str | bytes:
    kind = rng.randrange(100)
    if kind < 10:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # binary frame
    if kind < 25:
        return "".join(chr(rng.randrange(1, 0x7F)) for _ in range(rng.randrange(1, 200)))  # not JSON
    if kind < 35:
        return json.dumps(_value(rng))  # JSON, rarely an object
    if kind < 40:
        return json.dumps({"type": rng.choice(["Query", "", "response.done", "admin", "x" * 300]), "id": "a"})
    if kind < 41:
        return json.dumps({"type": "query", "id": "big", "text": "x" * (max_bytes + 10)})  # oversized frame
    typ = rng.choice([*ev.CLIENT_TYPES])
    fields = {k: _value(rng) for k in rng.sample(["id", "text", "camera", "proactive", "event_id"], rng.randrange(5))}
    if kind < 60:  # valid-looking ids and texts, hostile rest
        fields.setdefault("id", f"f{rng.randrange(10**6)}")
    return json.dumps({"type": typ, **fields})


async def _client(url: str, rng: random.Random, n: int, max_bytes: int, stats: Counter[str]) -> None:
    sent = 0
    while sent < n:
        try:
            async with connect(url, max_size=2**22, open_timeout=10, close_timeout=2) as ws:
                stats["connections"] += 1

                async def read() -> None:
                    async for raw in ws:
                        e = json.loads(raw)
                        if e["type"] == "error":
                            stats[f"error:{e['code']}"] += 1
                        else:
                            stats[f"event:{e['type']}"] += 1

                reader = asyncio.create_task(read(), name="soak-fuzz-read")
                try:
                    while sent < n:
                        await ws.send(message(rng, max_bytes))
                        sent += 1
                        stats["sent"] += 1
                        await asyncio.sleep(1 / PER_CLIENT_RATE)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reader
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            stats[f"closed:{code}"] += 1


async def run(quick: bool) -> Result:
    n = 500 if quick else 10_000
    res = Result("ws_fuzz", f"{n:,} fuzzed WebSocket messages from {CLIENTS} parallel clients")
    cam = {"id": "cam", "source": "builtin:demo", "sample_fps": 1}
    cfg = make_config(config_dict([cam]))
    async with app_running(cfg) as (_, handles):
        url = f"ws://127.0.0.1:{handles.port}"
        rss0 = rss_mib()
        stats: Counter[str] = Counter()
        rngs = [random.Random(1000 + i) for i in range(CLIENTS)]
        async with asyncio.timeout(120 if quick else 1200), asyncio.TaskGroup() as tg:
            for i, rng in enumerate(rngs):
                share = n // CLIENTS + (1 if i < n % CLIENTS else 0)
                tg.create_task(_client(url, rng, share, cfg.server.max_message_bytes, stats), name=f"soak-fuzz-{i}")
        ok_answer = await answered(url)
        health = handles.service.health()
        rss1 = rss_mib()
    errors = {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("error:")}
    closes = {k.split(":", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("closed:")}
    res.figures = {
        "messages_sent": stats["sent"],
        "error_events": sum(errors.values()),
        "errors_by_code": errors,
        "closes_by_code": closes,
        "connections": stats["connections"],
        "rss_mib_before": rss0,
        "rss_mib_after": rss1,
    }
    res.check(stats["sent"] == n, f"all {n:,} messages were sent")
    res.check(sum(errors.values()) > 0.5 * n, f"{sum(errors.values()):,} `error` events answered the bad messages")
    res.check(set(closes) <= {"1009"}, "connections were closed only for oversized frames (1009)", f"closes: {closes}")
    res.check(ok_answer, "a valid question is answered afterwards")
    res.check(health["status"] in ("ok", "degraded"), "the daemon stayed healthy")
    res.lost.append("nothing (messages that were not valid were answered with `error`, as specified)")
    return res
