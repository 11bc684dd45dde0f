"""The chat page on the real daemon (real clip with cuts, the tiny real model) in headless Debian chromium: the live
view shows the latest frame with the DTD overlay (and without it), scene thumbnails appear, a question is answered.
With LIVESIGHT_SCREENSHOT_DIR set, the screenshot is copied there (the README's picture: docs/chat-page.png)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from livesight.config import parse_config
from tests.protocols.web.test_browser import ARGS, CHROMIUM
from tests.soak.common import app_running

CLIP = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")  # hard cuts near 4.1, 6.5 and 8.4 s
TOKEN = "page-token"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/system-deps.sh)"),
    pytest.mark.skipif(not CLIP.exists(), reason="needs Debian opencv-doc (scripts/system-deps.sh)"),
]


async def until(page: Any, expression: str, within: float) -> None:
    """Poll a JS expression from outside the page (page.wait_for_function evaluates inside it, which the page's
    Content-Security-Policy forbids, rightly)."""
    try:
        async with asyncio.timeout(within):
            while not await page.evaluate(expression):  # noqa: ASYNC110 - the state lives in the browser
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not true within {within} s: {expression}") from None


async def test_live_view_thumbnails_and_an_answer(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    cfg = parse_config(
        {
            "cameras": [{"id": "megamind", "source": str(CLIP), "sample_fps": 2, "loop": True}],
            "model": {"preset": "tiny-random", "max_new_tokens": 12},
            "dtd": {"mode": "pixel", "threshold": 0.04},
            "memory": {"token_budget": 2048, "database": str(tmp_path / "ev.sqlite")},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0, "auth_token": TOKEN, "stats_interval_s": 0.5},
        }
    )
    problems: list[str] = []
    async with app_running(cfg) as (_app, handles), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 820})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"http://127.0.0.1:{handles.port}/?token={TOKEN}")
            await page.locator("#conn.conn-on").wait_for(timeout=20_000)
            # the live view: a decoded picture, with the overlay by default
            await until(page, "document.getElementById('live-img').naturalWidth > 0", 30)
            await page.locator("#live-cap", has_text="megamind · frame").wait_for()
            with_overlay = await page.get_attribute("#live-img", "src")
            await page.uncheck("#overlay")
            await until(page, f"document.getElementById('live-img').src !== {with_overlay!r}", 10)
            await page.check("#overlay")
            # a scene cut: its thumbnail in the strip and in the log
            await until(page, "[...document.querySelectorAll('.thumb img')].some(i => i.naturalWidth > 0)", 60)
            await page.locator(".msg.scene img").first.wait_for()
            await page.fill("#question", "What is happening in this scene?")
            await page.click("#ask")
            await page.locator(".msg.answer .info", has_text="tokens").wait_for(timeout=60_000)
            shot = tmp_path / "chat-page.png"
            await page.screenshot(path=str(shot))
            assert shot.stat().st_size > 30_000
            if os.environ.get("LIVESIGHT_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["LIVESIGHT_SCREENSHOT_DIR"]) / shot.name)
        finally:
            await browser.close()
    assert problems == [], problems
