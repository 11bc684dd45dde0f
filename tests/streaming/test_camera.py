"""Cameras on real decoded video: timestamp sampling, states, bad inputs, nothing left running."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from pathlib import Path

import pytest

from livesight.backoff import Backoff, backoff_delay
from livesight.config import CameraConfig, ReconnectConfig
from livesight.streaming.camera import Camera
from livesight.streaming.queues import DropOldestQueue
from livesight.streaming.sampler import Sampler
from livesight.types import CameraState, CameraStatus, Frame
from tests.streaming.media import write_clip

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")


def decode_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("livesight-decode")]


async def run_camera(
    cfg: CameraConfig, *, seconds: float | None = None
) -> tuple[list[CameraStatus], list[Frame], Camera]:
    states: list[CameraStatus] = []
    cam = Camera(cfg, on_status=states.append)
    frames: list[Frame] = []

    async def drain() -> None:
        while True:
            frames.append(await cam.frames.get())

    drainer = asyncio.create_task(drain(), name="drain")
    task = asyncio.create_task(cam.run(), name="camera")
    try:
        if seconds is None:
            await asyncio.wait_for(task, 30)
        else:
            await asyncio.sleep(seconds)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        drainer.cancel()
    while len(cam.frames):
        frames.append(cam.frames.get_nowait())
    return states, frames, cam


def cam(source: str, **kw) -> CameraConfig:
    return CameraConfig(id="c", source=source, **{"sample_fps": 2, "realtime": False, "queue_size": 1000, **kw})


async def test_file_is_sampled_by_timestamp_then_ends(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.mp4", seconds=4.0, fps=10)
    states, frames, c = await run_camera(cam(str(clip)))
    assert [s.state for s in states] == [CameraState.CONNECTING, CameraState.LIVE, CameraState.ENDED]
    assert c.counters.frames_decoded == 40
    assert [round(f.pts, 2) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert frames[0].rgb.shape == (120, 160, 3) and frames[0].camera == "c"
    assert decode_threads() == []


async def test_variable_frame_rate_file_sampled_by_time(tmp_path: Path) -> None:
    # 30 fps for 1 s, then 5 fps for 2 s: sampling by frame count would be wrong in one of the halves
    times = [i / 30 for i in range(30)] + [1.0 + i / 5 for i in range(10)]
    clip = write_clip(tmp_path / "vfr.mp4", times=times, fps=30)
    _, frames, _ = await run_camera(cam(str(clip), sample_fps=2))
    assert [round(f.pts, 2) for f in frames] == [0.0, 0.5, 1.0, 1.6, 2.0, 2.6]


async def test_realtime_pacing_and_loop(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "b.mp4", seconds=1.0, fps=10)
    _states, frames, c = await run_camera(cam(str(clip), realtime=True, loop=True), seconds=2.6)
    assert c.counters.frames_decoded in range(20, 32)  # about 26 frames in 2.6 s: paced, and looped
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[-1] > 1.5  # monotonic across the loop
    assert decode_threads() == []


@pytest.mark.parametrize("source", ["lavfi:testsrc2=size=160x120:rate=10", "builtin:demo"])
async def test_live_synthetic_sources(source: str) -> None:
    states, frames, _ = await run_camera(cam(source, realtime=True), seconds=1.8)
    assert states[-1].state is CameraState.LIVE
    assert 3 <= len(frames) <= 5
    assert decode_threads() == []


async def test_builtin_demo_has_motion_and_a_cut() -> None:
    import numpy as np

    from livesight.streaming.demo_stream import SCENE_S, demo_frames

    it = demo_frames()
    frames = [next(it) for _ in range(int(SCENE_S * 10) + 2)]
    diffs = [float(np.abs(a[1].astype(int) - b[1].astype(int)).mean()) for a, b in itertools.pairwise(frames)]
    cut = int(SCENE_S * 10) - 1
    assert diffs[cut] > 10 * max(diffs[:cut])  # the cut dwarfs the motion
    assert min(diffs[:cut]) > 0  # but there is motion


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p / "missing.mp4", "no such file"),
        (lambda p: (p / "random.mp4").write_bytes(bytes(range(256)) * 400) and p / "random.mp4", "invalid data"),
        (lambda p: Path("/dev/video9"), "no such device: /dev/video9"),
    ],
)
async def test_bad_inputs_fail_with_a_reason(tmp_path: Path, make, reason: str) -> None:
    states, frames, _ = await run_camera(cam(str(make(tmp_path))))
    assert states[-1].state is CameraState.FAILED and reason in states[-1].reason
    assert frames == [] and decode_threads() == []


async def test_truncated_file_ends_or_fails_cleanly(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "t.mp4", seconds=3.0)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    states, _, _ = await run_camera(cam(str(clip)))
    assert states[-1].state in (CameraState.ENDED, CameraState.FAILED) and decode_threads() == []


async def test_refused_connection_retries_then_fails() -> None:
    cfg = cam("rtsp://127.0.0.1:9/none", reconnect={"initial_s": 0.05, "max_s": 0.1, "attempts": 2})
    states, _, c = await run_camera(cfg)
    assert [s.state for s in states] == [
        CameraState.CONNECTING,
        CameraState.RECONNECTING,
        CameraState.RECONNECTING,
        CameraState.FAILED,
    ]
    assert "connection refused" in states[-1].reason and c.counters.reconnects == 2


@pytest.mark.skipif(not (OPENCV / "vtest.avi").exists(), reason="Debian opencv-doc not installed")
async def test_real_clip_decodes() -> None:
    _, frames, c = await run_camera(cam(str(OPENCV / "vtest.avi"), sample_fps=1))
    assert c.counters.frames_decoded == 795 and len(frames) == 80  # 795 frames at 10 fps
    assert frames[0].rgb.shape == (576, 768, 3)


def test_sampler_by_timestamp() -> None:
    s = Sampler(2.0)
    taken = [t for t in [0.0, 0.1, 0.49, 0.5, 0.51, 1.0, 3.0, 3.2, 3.5] if s.take(t)]
    assert taken == [0.0, 0.5, 1.0, 3.0, 3.5]
    tenth = Sampler(10.0)  # float timestamps at exactly the sampling rate: every frame
    assert all(tenth.take(i / 10) for i in range(100))


async def test_drop_oldest_queue_counts() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(2)
    for i in range(5):
        q.put_nowait(i)
    assert q.dropped == 3 and [q.get_nowait(), await q.get()] == [3, 4]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


def test_backoff_delay_is_jittered_capped_exponential() -> None:
    cfg = ReconnectConfig(initial_s=1, max_s=10, multiplier=2, jitter=0.2)
    rng = random.Random(1)
    for attempt, base in [(0, 1), (1, 2), (2, 4), (3, 8), (4, 10), (40, 10), (10_000, 10)]:
        delays = [backoff_delay(cfg, attempt, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= min(base * 1.2, 10) for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > base * 0.15  # really jittered
    assert backoff_delay(ReconnectConfig(initial_s=1, max_s=1, jitter=0), 5, rng) == 1.0


def test_backoff_is_jittered_capped_and_bounded() -> None:
    b = Backoff(ReconnectConfig(initial_s=1, max_s=8, multiplier=2, jitter=0.2, attempts=6))
    delays = [b.next_delay() for _ in range(6)]
    assert all(d >= 0.8 for d in delays) and max(delays) <= 8
    assert delays[2] > delays[0] and b.exhausted
    b.reset()
    assert not b.exhausted
