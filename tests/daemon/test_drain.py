"""DRAIN_TIMEOUT_S is enforced: a graceful stop that takes longer is cut short."""

from __future__ import annotations

import asyncio
import time

from livesight.daemon.run import enforce_drain


async def test_a_stop_that_hangs_is_cancelled_after_the_drain_timeout() -> None:
    stopping = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn_app() -> None:
        await stopping.wait()
        try:
            await asyncio.sleep(3600)  # never finishes draining
        except asyncio.CancelledError:
            cancelled.set()
            raise

    app = asyncio.create_task(stubborn_app(), name="app")
    drain = asyncio.create_task(enforce_drain(app, stopping, 0.3), name="drain")
    await asyncio.sleep(0.1)
    assert not drain.done()  # nothing happens before the stop
    t0 = time.monotonic()
    stopping.set()
    await drain
    assert cancelled.is_set() and app.cancelled()
    assert 0.25 <= time.monotonic() - t0 < 2.0


async def test_a_prompt_stop_is_left_alone() -> None:
    stopping = asyncio.Event()

    async def app_body() -> None:
        await stopping.wait()
        await asyncio.sleep(0.05)

    app = asyncio.create_task(app_body(), name="app")
    stopping.set()
    await enforce_drain(app, stopping, 5.0)
    assert app.done() and not app.cancelled()
