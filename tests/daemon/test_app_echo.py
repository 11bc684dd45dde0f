"""The whole daemon path with the `echo` backend chosen by config (`model.backend: echo`): a real decoded stream,
sampler, DTD, scene detector, memory, model worker, service, WebSocket server and event log — only the model is
the deliberately small second backend. Proves the backend seam: nothing but the registry knows which model runs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from websockets.asyncio.client import connect

from livesight.config import parse_config
from livesight.daemon.app import App, run_app
from livesight.memory.event_log import EventLog
from livesight.model.echo import EchoBackend


async def recv_until(ws, pred, within: float) -> dict:
    async with asyncio.timeout(within):
        while True:
            e = json.loads(await ws.recv())
            if pred(e):
                return e


async def test_app_runs_end_to_end_on_the_echo_backend(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo", "sample_fps": 4}],
            "model": {"backend": "echo", "max_new_tokens": 32},
            "dtd": {"mode": "pixel"},
            "memory": {"token_budget": 1024, "database": str(db)},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 0.3},
        },
        origin="test",
    )
    app = App(cfg)
    runner = asyncio.create_task(run_app(app), name="app")
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        assert isinstance(app._backend, EchoBackend), "the registry built the backend the config names"
        assert handles.service.model_info["name"] == "echo"
        async with connect(f"ws://127.0.0.1:{handles.port}") as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "session.created" and hello["session"]["camera"] == "cam"
            await ws.send(json.dumps({"type": "watch.add", "id": "w1", "text": "say: yes, a person"}))
            await recv_until(ws, lambda e: e["type"] == "watch.added", 5)
            # stats show frames flowing through DTD into memory
            stats = await recv_until(ws, lambda e: e["type"] == "stats" and e["cameras"]["cam"]["tokens_kept"] > 0, 20)
            cam = stats["cameras"]["cam"]
            assert cam["frames_encoded"] > 0 and cam["tokens_kept"] <= cam["tokens_total"]
            assert cam["kv_tokens"] > 0 and cam["kv_bytes"] == cam["kv_tokens"] * 12 * 4 * 2
            await ws.send(json.dumps({"type": "query", "id": "q1", "text": "What is happening?"}))
            deltas: list[str] = []
            done = await recv_until(
                ws,
                lambda e: (
                    (e["type"] == "response.delta" and deltas.append(e["delta"]) and False)
                    or (e["type"] == "response.done" and e.get("query_id") == "q1")
                ),
                20,
            )
            assert done["status"] == "completed", done
            m = re.fullmatch(
                r"I hold (\d+) frames \((\d+) visual tokens, the latest at [\d.]+ s\)\. "
                r"You asked: What is happening\?",
                done["text"],
            )
            assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, done["text"]
            assert "".join(deltas) == done["text"]
            assert done["usage"]["completion_tokens"] == len(done["text"].split())
            # the demo cuts every 5 s: the scene change re-asks the watch, whose scripted answer is "yes"
            scene = await recv_until(ws, lambda e: e["type"] == "scene.change", 30)
            hit = await recv_until(ws, lambda e: e["type"] == "response.done" and e.get("watch_id") == "w1", 20)
            assert hit["text"].startswith("yes, a person") and scene["scene"] >= 2
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)
    log = EventLog(str(db))
    try:
        assert log.last_scene("cam") >= 2
        answers = {r["response_id"]: r for r in log.rows("responses")}
        assert answers[done["response_id"]]["answer"] == done["text"]
    finally:
        log.close()
