"""`livesight demo`'s printer on the running daemon (echo backend, built-in stream): it prints the typed camera
snapshots, the scene changes and the answers a newcomer is told to expect (README)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re

from livesight.daemon import demo_printer
from livesight.model.echo import EchoBackend
from tests.daemon.conftest import daemon_config, running, until


async def test_demo_printer_shows_stats_scenes_and_answers(monkeypatch) -> None:
    monkeypatch.setattr(demo_printer, "ASK_EVERY_S", 0.5)
    cfg = daemon_config(
        [{"id": "demo", "source": "builtin:demo", "sample_fps": 4}],
        model={"backend": "echo", "preset": None},
        dtd={"mode": "pixel"},
    )
    out = io.StringIO()
    async with running(cfg, EchoBackend()) as (app, _):
        printer = asyncio.create_task(demo_printer.print_demo(app, "say: all quiet", out), name="printer")
        try:
            await until(lambda: "[answer]" in out.getvalue() and "[scene]" in out.getvalue(), within=30)
        finally:
            printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await printer
    text = out.getvalue()
    stats = re.findall(r"\[stats\] demo: live frames in (\d+), sampled (\d+), .*tokens kept (\d+)/(\d+)", text)
    assert stats, text
    frames_in, sampled, kept, total = map(int, stats[-1])
    assert frames_in >= sampled > 0 and 0 < kept <= total
    assert re.search(r"\[scene\] demo: scene 2 starts at \d+\.\ds", text), text
    assert "[answer] Q: 'say: all quiet' → 'all quiet' (completed" in text, text
