"""The daemon with `model.backend: openai` in this process, and a WebSocket client's view of a question."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import connect

from livesight.config import Config, parse_config
from livesight.daemon.app import App

STATIC = "lavfi:testsrc2=size=320x240:rate=10"  # moves (a counter), never cuts: no captions, no proactive


def remote_config(base_url: str, cameras: list[dict[str, Any]] | None = None, **sections: Any) -> Config:
    base: dict[str, Any] = {
        "cameras": cameras or [{"id": "cam", "source": STATIC, "sample_fps": 2}],
        "model": {"backend": "openai", "base_url": base_url, "name": "stub", "max_new_tokens": 16},
        "memory": {"database": None},
        "proactive": {"enabled": False},
        "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 0.5},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(base, origin="test")


@contextlib.asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[App]:
    app = App(cfg)
    task = asyncio.create_task(app.run(), name="test-app")
    try:
        ready = asyncio.create_task(app.wait_ready(), name="test-app-ready")
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            task.result()
        yield app
    finally:
        app.stop()
        async with asyncio.timeout(30):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(pred: Callable[[], bool], within: float = 30, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(within):
            while not pred():  # noqa: ASYNC110 - polling counters that expose no event
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {within}s") from None


async def ask_ws(port: int, text: str = "What do you see?", within: float = 30) -> tuple[dict, list[str]]:
    """A question over a real WebSocket: (its response.done or error event, the deltas before it)."""
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.recv()  # session.created
        await ws.send(json.dumps({"type": "query", "id": "q", "text": text}))
        deltas: list[str] = []
        async with asyncio.timeout(within):
            while True:
                e = json.loads(await ws.recv())
                if e["type"] == "response.delta":
                    deltas.append(e["delta"])
                if (e["type"] == "response.done" and e.get("query_id") == "q") or e["type"] == "error":
                    return e, deltas


def frames_with_news(app: App) -> int:
    return int(app.service.stats().cameras["cam"]["frames_with_news"])


def frames_sampled(app: App) -> int:
    return int(app.service.stats().cameras["cam"]["frames_sampled"])


def model_health(app: App) -> dict[str, Any]:
    return app.service.health()["model"]
