"""The chat page in headless Debian chromium (driven by playwright; no downloaded browsers)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from livesight.protocols.contract.api import StatsSnapshot
from tests.helpers import Running

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/system-deps.sh)"),
]


async def test_page_asks_streams_and_shows_proactive(running: Running, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    pipe, svc = running.pipe, running.pipe.service
    pipe.backend.token_delay_s = 0.1
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 760})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"http://127.0.0.1:{running.port}/")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            await page.locator(".camera .cam-id", has_text="cam2").wait_for()
            await page.locator("#model-banner", has_text="random weights").wait_for()  # said once, up front

            svc.counters["cam1"].frames_decoded = 1234
            pipe.publish(svc.stats())
            await page.locator(".stats dd", has_text="1234").first.wait_for()

            await page.select_option("#camera", "cam2")
            await page.fill("#question", "what is on the table?")
            await page.click("#ask")
            answer = page.locator(".msg.answer").last
            await page.locator(".msg.answer.streaming .text", has_text="I hold").wait_for()  # partial, streaming
            await answer.locator(".text", has_text="You asked: what is on the table?").wait_for()
            await answer.locator(".info", has_text="14 tokens").wait_for()

            pipe.scene("cam1", 3)
            pipe.proactive("a person walks in and sits down", camera="cam1", scene=3)
            proactive = page.locator(".msg.proactive").last
            await proactive.locator(".text", has_text="a person walks in and sits down").wait_for()
            assert "scene 3" in await proactive.locator(".meta").inner_text()
            await page.locator(".tl-mark").first.wait_for()
            await page.locator(".msg.scene", has_text="scene 3 begins").wait_for()

            await page.fill("#watch-text", "a red car")
            await page.click("#watch-form button")
            await page.locator(".watch-text", has_text="w1: a red car").wait_for()
            (watch_id,) = svc.watches
            pipe.watch_hit(watch_id, "yes, a red car is parked")
            await page.locator(".msg.watch-hit .text", has_text="yes, a red car is parked").wait_for()

            pipe.publish(StatsSnapshot(time.time(), svc.stats().cameras, {"clients": 1, "drop_ratio": 0.75}))
            await page.locator("#totals", has_text="tokens dropped 75.0 %").wait_for()
            shot = tmp_path / "chat-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("LIVESIGHT_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["LIVESIGHT_SCREENSHOT_DIR"]) / shot.name)
        finally:
            await browser.close()
    assert problems == [], problems


async def test_page_cancel_button(running: Running) -> None:

    from playwright.async_api import async_playwright

    running.pipe.hold()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{running.port}/")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            await page.fill("#question", "a slow one")
            await page.click("#ask")
            await page.locator("#cancel:not([disabled])").wait_for()
            await page.locator(".msg.answer.streaming").wait_for()
            await page.click("#cancel")
            await page.locator(".msg.answer.cancelled .info", has_text="cancelled").wait_for()
            assert running.pipe.service.responses.active == 0
            await page.locator("#cancel[disabled]").wait_for()
        finally:
            await browser.close()


async def test_page_passes_its_token_on() -> None:
    from playwright.async_api import async_playwright

    from tests.helpers import start_server, stop_server

    r = await start_server(auth_token="s3cret")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{r.port}/?token=s3cret")
                await page.locator("#conn.conn-on").wait_for(timeout=10_000)
                page2 = await browser.new_page()
                await page2.goto(f"http://127.0.0.1:{r.port}/")
                await page2.locator("#conn", has_text="disconnected").wait_for(timeout=10_000)
            finally:
                await browser.close()
    finally:
        await stop_server(r)
