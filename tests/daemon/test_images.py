"""Camera pictures: the DTD overlay (exact pixels), the latest-frame slots, JPEG caching and bounds, thumbnails
with retention, and the HTTP image endpoints on a real server (401 and no image bytes without the token)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livesight.config import ServerConfig
from livesight.daemon.frame_slots import FrameSlots
from livesight.daemon.images import Images, ThumbnailStore, thumbnail_dir
from livesight.errors import ConfigError
from livesight.imaging import DIM, OUTLINE, overlay
from livesight.memory.event_log import EventLog
from livesight.protocols.contract.api import BusyError, UnknownCameraError
from livesight.protocols.web.server import WebServer
from livesight.types import DTDStep, SceneChange
from tests.helpers import http_get
from tests.pipeline import pipeline

TOKEN = "pictures-token"


def step(camera: str, keep: np.ndarray, grid: tuple[int, int], pts: float = 1.0) -> DTDStep:
    return DTDStep(camera, pts, time.time(), grid, keep, keep.astype(np.float32), False, 0.0, 0.0)


def frame(value: int, grid: tuple[int, int] = (2, 3)) -> np.ndarray:
    return np.full((grid[0] * 28, grid[1] * 28, 3), value, np.uint8)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ---- overlay ------------------------------------------------------------------------------------------------


def test_overlay_dims_dropped_and_outlines_kept() -> None:
    img = frame(200)
    keep = np.array([True, False, False, False, False, True])
    out = overlay(img, keep, (2, 3))
    assert (img == 200).all()  # the input is untouched
    dropped = out[0:28, 28:56]
    assert (dropped == int(200 * DIM)).all()  # region (0, 1) dimmed, no outline
    kept = out[0:28, 0:28]
    assert (kept[1:-1, 1:-1] == 200).all()  # inside of a kept region unchanged
    for edge in (kept[0], kept[-1], kept[:, 0], kept[:, -1]):
        assert (edge == OUTLINE).all()
    assert (out[28:56, 56:84][0] == OUTLINE).all()  # region (1, 2)
    with pytest.raises(ValueError):
        overlay(img, keep[:5], (2, 3))


# ---- slots and encoding -------------------------------------------------------------------------------------


def test_slots_keep_the_latest_and_scene_starts() -> None:
    slots = FrameSlots()
    keep = np.ones(6, bool)
    slots.put(step("a", keep, (2, 3)), frame(10), None)
    change = SceneChange("a", 7, 2.0, time.time(), 5.0)
    slots.put(step("a", keep, (2, 3), pts=2.0), frame(20), change)
    slots.put(step("a", keep, (2, 3), pts=3.0), frame(30), None)
    latest = slots.latest("a")
    assert latest is not None and latest.seq == 3 and latest.rgb[0, 0, 0] == 30 and latest.token_px == 28
    start = slots.scene_start("a", 7)
    assert start is not None and start.rgb[0, 0, 0] == 20
    assert slots.latest("b") is None and slots.scene_start("a", 6) is None


def test_a_late_scene_change_gets_the_frame_at_its_pts() -> None:
    """The detector confirms a cut on the next frame and reports the new scene's first frame (its pts)."""
    slots = FrameSlots()
    keep = np.ones(6, bool)
    for i, pts in enumerate([0.0, 0.5, 1.0]):
        slots.put(step("a", keep, (2, 3), pts=pts), frame(10 * (i + 1)), None)
    slots.put(step("a", keep, (2, 3), pts=1.5), frame(40), SceneChange("a", 2, 1.0, time.time(), 5.0))
    start = slots.scene_start("a", 2)
    assert start is not None and start.pts == 1.0 and start.rgb[0, 0, 0] == 30
    latest = slots.latest("a")
    assert latest is not None and latest.pts == 1.5 and latest.seq == 4
    # older than anything held (a slow detector): the oldest frame held after it
    for k in range(5):
        slots.put(step("a", keep, (2, 3), pts=2.0 + k), frame(50 + k), None)
    slots.put(step("a", keep, (2, 3), pts=7.0), frame(60), SceneChange("a", 3, 1.8, time.time(), 5.0))
    start = slots.scene_start("a", 3)
    assert start is not None and start.pts == 4.0


async def test_latest_jpeg_is_encoded_once_per_frame_and_bounded() -> None:
    slots = FrameSlots()
    images = Images(["a"], slots, max_pending=2)
    try:
        assert await images.latest_jpeg("a", overlay=False) is None
        slots.put(step("a", np.array([True, False, True, False, True, False]), (2, 3)), frame(120), None)
        got = await asyncio.gather(*(images.latest_jpeg("a", overlay=True) for _ in range(2)))
        assert (images.encoded == 1 and got[0] is got[1]) or got[0].data == got[1].data  # shared
        again = await images.latest_jpeg("a", overlay=True)
        assert images.encoded == 1 and again.seq == 1  # cached for this frame
        plain = decode((await images.latest_jpeg("a", overlay=False)).data)
        over = decode(again.data)
        assert abs(int(plain[14, 42, 0]) - 120) <= 3 and abs(int(over[14, 42, 0]) - int(120 * DIM)) <= 3
        slots.put(step("a", np.ones(6, bool), (2, 3), pts=2.0), frame(90), None)
        assert (await images.latest_jpeg("a", overlay=True)).seq == 2 and images.encoded == 3
        # encodings already waiting up to the bound (stand-ins for slow ones): a new frame is refused, not queued
        loop = asyncio.get_running_loop()
        blockers = {("a", True, 100 + i): loop.create_future() for i in range(2)}
        images._inflight.update(blockers)
        slots.put(step("a", np.ones(6, bool), (2, 3), pts=3.0), frame(60), None)
        with pytest.raises(BusyError):
            await images.latest_jpeg("a", overlay=False)
        assert images.refused == 1
        for k, f in blockers.items():
            f.cancel()
            images._inflight.pop(k)
        with pytest.raises(UnknownCameraError):
            await images.latest_jpeg("nope", overlay=False)
    finally:
        await images.close()


async def test_thumbnails_are_stored_and_trimmed(tmp_path: Path) -> None:
    assert thumbnail_dir(str(tmp_path / "ev.sqlite")) == tmp_path / "ev.thumbnails"
    assert thumbnail_dir(None) is None and thumbnail_dir(":memory:") is None
    log = EventLog(tmp_path / "ev.sqlite", max_rows=100)
    slots = FrameSlots()
    store = ThumbnailStore(tmp_path / "ev.thumbnails", max_files=3)
    images = Images(["a"], slots, store=store, event_log=log)
    await images.start()
    try:
        for n in range(1, 6):
            change = SceneChange("a", n, float(n), time.time(), 4.0)
            slots.put(step("a", np.ones(6, bool), (2, 3), pts=float(n)), frame(40 * n), change)
            log.scene(change)
            images.save_scene(change)
            data = await images.scene_jpeg("a", n)  # waits for the write in progress
            assert data is not None and abs(int(decode(data)[5, 5, 0]) - 40 * n) <= 3
        assert sorted(p.name for p in (tmp_path / "ev.thumbnails" / "a").iterdir()) == ["3.jpg", "4.jpg", "5.jpg"]
        assert await images.scene_jpeg("a", 1) is None and images.thumbnails_written == 5
        log.flush()
        rows = await images.scenes("a", limit=10)
        assert [(r["scene"], r["thumbnail"]) for r in rows] == [(5, True), (4, True), (3, True), (2, False), (1, False)]
    finally:
        await images.close()
        log.close()
    # a restart finds the files again (retention continues across runs)
    store2 = ThumbnailStore(tmp_path / "ev.thumbnails", max_files=2)
    store2.open()
    assert sorted(p.name for p in (tmp_path / "ev.thumbnails" / "a").iterdir()) == ["4.jpg", "5.jpg"]


async def test_the_first_scene_gets_its_thumbnail(tmp_path: Path) -> None:
    slots = FrameSlots()
    images = Images(["a"], slots, store=ThumbnailStore(tmp_path / "th", 10))
    await images.start()
    try:
        slots.expect_first_scene("a", 42)  # numbering continues after a restart
        slots.put(step("a", np.ones(6, bool), (2, 3)), frame(80), None)  # the first frame: no scene.change for it
        slots.put(step("a", np.ones(6, bool), (2, 3), pts=2.0), frame(160), None)
        async with asyncio.timeout(5):
            while images.thumbnails_written < 1:  # noqa: ASYNC110 - the write is scheduled from "the worker"
                await asyncio.sleep(0.01)
        data = await images.scene_jpeg("a", 42)
        assert data is not None and abs(int(decode(data)[5, 5, 0]) - 80) <= 3  # the first frame, not a later one
        assert images.thumbnails_written == 1
    finally:
        await images.close()


# ---- HTTP ---------------------------------------------------------------------------------------------------


async def test_image_endpoints_need_the_token(tmp_path: Path) -> None:
    slots = FrameSlots()
    log = EventLog(tmp_path / "ev.sqlite")
    images = Images(["cam1", "cam2"], slots, store=ThumbnailStore(tmp_path / "th", 10), event_log=log)
    await images.start()
    change = SceneChange("cam1", 2, 1.0, time.time(), 4.0)
    slots.put(step("cam1", np.array([True, False] * 3), (2, 3)), frame(150), change)
    log.scene(change)
    images.save_scene(change)
    server = WebServer(
        pipeline(["cam1", "cam2"]).service, ServerConfig(host="127.0.0.1", port=0, auth_token=TOKEN), images=images
    )
    port = await server.start()
    try:
        paths = [
            "/api/cameras/cam1/latest.jpg",
            "/api/cameras/cam1/latest.jpg?overlay=1",
            "/api/cameras/cam1/scenes",
            "/api/cameras/cam1/scenes/2.jpg",
        ]
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                status, hdrs, body = await http_get(port, path, headers)
                assert status == 401, path
                assert b"\xff\xd8" not in body and hdrs["content-type"].startswith("text/plain")
            status, _, body = await http_get(
                port, path, {"Origin": "http://evil.example", "Authorization": f"Bearer {TOKEN}"}
            )
            assert status == 403 and b"\xff\xd8" not in body
        ok = {"Authorization": f"Bearer {TOKEN}"}
        status, hdrs, body = await http_get(port, "/api/cameras/cam1/latest.jpg?overlay=1", ok)
        assert status == 200 and hdrs["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert hdrs["cross-origin-resource-policy"] == "same-origin" and hdrs["x-frame-seq"] == "1"
        assert decode(body).shape == (56, 84, 3)
        status, _, body = await http_get(
            port, "/api/cameras/cam1/latest.jpg", {**ok, "If-None-Match": hdrs["etag"] + "x"}
        )
        assert status == 200
        status, _, body = await http_get(
            port, "/api/cameras/cam1/latest.jpg?overlay=1", {**ok, "If-None-Match": hdrs["etag"]}
        )
        assert status == 304 and body == b""
        # a new frame: the old ETag no longer matches, and polling it costs one encoding
        encoded = images.encoded
        slots.put(step("cam1", np.ones(6, bool), (2, 3), pts=2.0), frame(100), None)
        status, hdrs2, _ = await http_get(
            port, "/api/cameras/cam1/latest.jpg?overlay=1", {**ok, "If-None-Match": hdrs["etag"]}
        )
        assert status == 200 and hdrs2["x-frame-seq"] == "2" and images.encoded == encoded + 1
        status, _, _ = await http_get(
            port, "/api/cameras/cam1/latest.jpg?overlay=1", {**ok, "If-None-Match": hdrs2["etag"]}
        )
        assert status == 304 and images.encoded == encoded + 1
        status, _, body = await http_get(port, f"/api/cameras/cam1/scenes/2.jpg?token={TOKEN}")
        assert status == 200 and body[:2] == b"\xff\xd8"
        log.flush()
        status, _, body = await http_get(port, "/api/cameras/cam1/scenes", ok)
        scenes = json.loads(body)
        assert status == 200 and scenes["camera"] == "cam1"
        assert (
            scenes["scenes"][0]["scene"] == 2 and scenes["scenes"][0]["thumbnail"] == "/api/cameras/cam1/scenes/2.jpg"
        )
        assert (await http_get(port, "/api/cameras/cam2/latest.jpg", ok))[0] == 503  # no frame yet
        assert (await http_get(port, "/api/cameras/nope/latest.jpg", ok))[0] == 404
        assert (await http_get(port, "/api/cameras/cam1/scenes/9.jpg", ok))[0] == 404
        assert (await http_get(port, "/api/cameras/cam1/scenes?limit=0", ok))[0] == 400
        assert (await http_get(port, "/api/cameras/cam1/other", ok))[0] == 404
        status, _, metrics = await http_get(port, "/metrics", ok)
        assert status == 200
        assert f"livesight_pictures_encoded_total {float(images.encoded)}".encode() in metrics
        assert b"livesight_pictures_thumbnails_written_total 1.0" in metrics
    finally:
        await server.close()
        await images.close()
        log.close()


async def test_an_unusable_thumbnail_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    images = Images(["a"], FrameSlots(), store=ThumbnailStore(tmp_path / "file" / "ev.thumbnails", 10))
    try:
        with pytest.raises(ConfigError, match=r"memory\.database: thumbnail directory"):
            await images.start()
    finally:
        await images.close()
