"""A real RTSP server (GStreamer): frames arrive; killing it means `reconnecting`, restarting it means `live`
again (twice); freezing it (SIGSTOP) means `stalled`; one failing camera never stops another."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from livesight.config import CameraConfig
from livesight.streaming.camera import Camera
from livesight.types import CameraState, CameraStatus
from tests.helpers import free_port
from tests.rtsp import RTSPServer, has_gst

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]  # a GStreamer RTSP server process, kills and restarts: make test only

if not has_gst():
    pytest.skip("GStreamer RTSP server not installed (scripts/system-deps.sh installs it)", allow_module_level=True)


@pytest.fixture
def rtsp() -> Iterator[RTSPServer]:
    server = RTSPServer(free_port())
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.signal(signal.SIGCONT)
            server.kill()


async def wait_for(states: list[CameraStatus], state: CameraState, within_s: float, after: int = 0) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for i in range(after, len(states)):
            if states[i].state is state:
                return i
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {state.value} within {within_s}s: {[(s.state.value, s.reason) for s in states]}")


def camera(url: str, **kw) -> tuple[Camera, list[CameraStatus]]:
    states: list[CameraStatus] = []
    cfg = CameraConfig(id="rtsp", source=url, sample_fps=2, reconnect={"initial_s": 0.2, "max_s": 1.0}, **kw)
    return Camera(cfg, on_status=states.append), states


async def test_frames_then_kill_and_restart_twice(rtsp: RTSPServer) -> None:
    cam, states = camera(rtsp.url)
    task = asyncio.create_task(cam.run(), name="camera:rtsp")
    try:
        i = await wait_for(states, CameraState.LIVE, 20)
        await asyncio.sleep(1.5)
        assert cam.counters.frames_sampled >= 2
        for _ in range(2):  # a camera reboot, twice
            rtsp.kill()
            i = await wait_for(states, CameraState.RECONNECTING, 20, after=i + 1)
            rtsp.start()
            i = await wait_for(states, CameraState.LIVE, 30, after=i + 1)
            before = cam.counters.frames_sampled
            await asyncio.sleep(1.5)
            assert cam.counters.frames_sampled > before
        assert cam.counters.reconnects >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_frozen_server_is_stalled_then_recovers(rtsp: RTSPServer) -> None:
    cam, states = camera(rtsp.url, stall_timeout_s=2.0)
    task = asyncio.create_task(cam.run(), name="camera:rtsp")
    try:
        i = await wait_for(states, CameraState.LIVE, 20)
        rtsp.signal(signal.SIGSTOP)
        i = await wait_for(states, CameraState.STALLED, 15, after=i + 1)
        rtsp.signal(signal.SIGCONT)
        await wait_for(states, CameraState.LIVE, 40, after=i + 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failing_camera_does_not_stop_the_others(rtsp: RTSPServer, tmp_path: Path) -> None:
    good, good_states = camera(rtsp.url)
    bad_cfg = CameraConfig(id="bad", source="rtsp://127.0.0.1:9/x", reconnect={"initial_s": 0.1, "attempts": 1})
    bad_states: list[CameraStatus] = []
    bad = Camera(bad_cfg, on_status=bad_states.append)
    missing = Camera(CameraConfig(id="missing", source=str(tmp_path / "no.mp4")), on_status=bad_states.append)
    async with asyncio.TaskGroup() as tg:
        t_good = tg.create_task(good.run(), name="camera:good")
        tg.create_task(bad.run(), name="camera:bad")
        tg.create_task(missing.run(), name="camera:missing")
        await wait_for(good_states, CameraState.LIVE, 20)
        await asyncio.sleep(2.0)
        assert [s.state for s in bad_states].count(CameraState.FAILED) == 2
        assert good.counters.frames_sampled >= 3 and good.state is CameraState.LIVE
        t_good.cancel()
