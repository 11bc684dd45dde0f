from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from livesight.config import Config, parse_config
from livesight.daemon.app import App
from livesight.types import ResponseDone
from tests.helpers import eventually


def daemon_config(cameras: list[dict[str, Any]], **sections: Any) -> Config:
    base: dict[str, Any] = {
        "cameras": cameras,
        "model": {"preset": "tiny-random", "max_new_tokens": 8},
        "memory": {"token_budget": 2048, "database": None},
        "proactive": {"enabled": False},
        "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 0.5},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(base, origin="test")


@contextlib.asynccontextmanager
async def running(cfg: Config, backend: Any) -> AsyncIterator[tuple[App, asyncio.Task[None]]]:
    """The whole daemon in this process, with an already loaded backend."""
    app = App(cfg, backend=backend)
    task = asyncio.create_task(app.run(), name="test-app")
    try:
        ready = asyncio.create_task(app.wait_ready(), name="test-app-ready")
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            task.result()
        yield app, task
    finally:
        app.stop()
        async with asyncio.timeout(30):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(pred: Callable[[], bool], within: float = 30, what: str = "condition") -> None:
    """`eventually` with the daemon tests' longer default (a real tiny model on a shared 2-core box)."""
    await eventually(pred, within, what)


async def ask(app: App, camera: str, text: str = "What do you see?", within: float = 30) -> ResponseDone:
    async with asyncio.timeout(within):
        async for ev in app.service.query(camera=camera, text=text, query_id=None):
            if isinstance(ev, ResponseDone):
                return ev
    raise AssertionError("no response.done")
