"""The chat page shows an answer's citations (headless Debian chromium, driven by playwright): thumbnails under the
answer with their time, served by the node's keyframe route from a real timeline store; a click opens the scene over
the page. With LIVESIGHT_SCREENSHOT_DIR set, the screenshot is copied there (docs/ask-the-past.png)."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from livesight.config import ServerConfig
from livesight.daemon.images import Images
from livesight.daemon.timeline.face import TimelineFace
from livesight.protocols.web.server import WebServer
from livesight.timeline.summary import Summaries
from livesight.types import Keyframe, TimelineEntry
from tests.helpers import eventually
from tests.pipeline import Pipeline, pipeline
from tests.protocols.web.test_browser import ARGS, CHROMIUM
from tests.timeline.conftest import close_store, open_store

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (scripts/system-deps.sh)"),
]


def street(what: str) -> bytes:
    """A synthetic street-camera keyframe: a road, a gate, and `what` (van, courier, empty)."""
    img = Image.new("RGB", (320, 180), (150, 190, 225))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 110, 320, 180), fill=(95, 95, 100))  # road
    d.rectangle((0, 100, 320, 110), fill=(170, 170, 160))  # kerb
    d.rectangle((250, 40, 300, 100), fill=(120, 80, 50))  # gate
    if what == "van":
        d.rectangle((60, 70, 170, 125), fill=(200, 30, 30))
        d.rectangle((150, 80, 168, 100), fill=(200, 230, 250))
        for x in (85, 145):
            d.ellipse((x - 10, 118, x + 10, 138), fill=(20, 20, 20))
    elif what == "courier":
        d.ellipse((200, 55, 216, 71), fill=(230, 190, 160))
        d.rectangle((200, 71, 216, 105), fill=(40, 90, 160))
        d.rectangle((214, 78, 236, 96), fill=(170, 120, 60))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


NOW = time.time()
SCENES = [("tl_page_1", 3, NOW - 2700, "a red van parks by the gate", "van"),
          ("tl_page_2", 4, NOW - 1500, "a courier carries a box to the gate", "courier"),
          ("tl_page_3", 5, NOW - 600, "the street is empty", "empty")]  # fmt: skip


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Pipeline, int]]:
    store = open_store(tmp_path / "ev.sqlite")
    for id_, scene, start, caption, what in SCENES:
        entry = TimelineEntry(
            id_, "cam1", scene, 0, start - NOW + 3600, start, start - NOW + 3660, start + 60, caption,
            (Keyframe("first", start - NOW + 3600, start),), caption_state="done",
        )  # fmt: skip
        store.add_entry(entry, [street(what)])
    store.flush()
    pipe = pipeline(["cam1", "cam2"]).start()
    pipe.service.summaries = Summaries(store.between, zone=UTC)
    images = Images(["cam1", "cam2"], pipe.service.frames)
    await images.start()
    server = WebServer(
        pipe.service,
        ServerConfig(host="127.0.0.1", port=0),
        images=images,
        summaries=pipe.service,
        timeline=TimelineFace(store, ["cam1", "cam2"], None),
    )
    port = await server.start()
    try:
        # the live view: one frame of the street, as the model saw it
        counters = pipe.service.counters["cam1"]
        pipe.frame("cam1", np.asarray(Image.open(io.BytesIO(street("empty")))), 3600.0)
        await eventually(lambda: counters.tokens_total > 0, 5, "the frame encoded")
        counters.frames_sampled = counters.frames_decoded = 1
        yield pipe, port
    finally:
        await server.close()
        await pipe.stop()
        await images.close()
        close_store(store)


async def test_an_answer_shows_its_citations_and_opens_a_scene(served: tuple[Pipeline, int], tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    pipe, port = served
    problems: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 700})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            pipe.publish(pipe.service.stats())
            await page.locator("#live-cap", has_text="cam1 · frame").wait_for()
            await page.select_option("#camera", "cam1")
            await page.fill("#question", "What happened in the last hour?")
            await page.click("#ask")
            answer = page.locator(".msg.answer").last
            await answer.locator(".info").wait_for()
            cites = answer.locator(".citations .citation")
            await cites.nth(2).locator("img").wait_for()
            assert await cites.count() == 3
            for i, (id_, *_rest) in enumerate(SCENES):
                src = await cites.nth(i).locator("img").get_attribute("src")
                assert src == f"/api/timeline/{id_}/keyframes/0.jpg?camera=cam1"
                caption = await cites.nth(i).locator("figcaption").inner_text()
                assert caption.startswith("cam1 · ")
            # every thumbnail loaded (a real JPEG from the store's keyframe route)
            await page.wait_for_function(
                "() => [...document.querySelectorAll('.citation img')].every((i) => i.complete && i.naturalWidth > 0)"
            )
            shot = tmp_path / "ask-the-past.png"
            await page.screenshot(path=str(shot))
            await cites.nth(0).locator("a").click()
            overlay = page.locator("#scene-overlay")
            await overlay.locator("figcaption", has_text="scene 3").wait_for()
            await page.wait_for_function("() => document.querySelector('#scene-overlay img').naturalWidth === 320")
            await page.keyboard.press("Escape")
            await overlay.wait_for(state="detached")
            assert shot.stat().st_size > 10_000
            if os.environ.get("LIVESIGHT_SCREENSHOT_DIR"):
                shutil.copy(shot, Path(os.environ["LIVESIGHT_SCREENSHOT_DIR"]) / shot.name)
        finally:
            await browser.close()
    assert problems == [], problems
