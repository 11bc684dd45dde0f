"""No silent swallow: every broad `except` that survives an error counts it by kind and logs it once per kind
(errors.contain): the batched encoder call that falls back to frame by frame, a DTD reset that fails after a failed
frame, a source that cannot be closed. Visible in /healthz (`contained_errors`) and /metrics
(`livesight_contained_errors_total{kind}`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from livesight.config import CameraConfig
from livesight.errors import contain, contained_counts
from livesight.protocols.web.metrics import ServerMetrics
from livesight.streaming import camera as camera_module
from livesight.streaming.camera import Camera
from livesight.streaming.demo_stream import demo_frames
from livesight.streaming.sources import StreamInfo
from livesight.types import CameraState, Frame
from tests.helpers import eventually
from tests.pipeline import pipeline

log = logging.getLogger("test.contained")


def _count(kind: str) -> int:
    return contained_counts().get(kind, 0)


def test_logged_once_per_kind_then_at_each_power_of_ten(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test.contained")
    kind = f"test.kind.{time.monotonic_ns()}"
    for i in range(120):
        contain(kind, ValueError(f"boom {i}"), log, "a test part")
    lines = [r for r in caplog.records if kind in r.getMessage()]
    assert len(lines) == 3  # the 1st (with its traceback), the 10th, the 100th
    assert lines[0].exc_info is not None and lines[1].exc_info is None
    assert "10 times so far" in lines[1].getMessage()
    assert _count(kind) == 120


def _frames(n: int) -> Iterator[tuple[float, np.ndarray]]:
    it = demo_frames()
    for _ in range(n):
        yield next(it)


async def test_a_failed_batched_encode_and_a_failed_dtd_reset_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    pipe = pipeline(["cam1", "cam2"])
    encode = pipe.backend.encode

    def encode_one_at_a_time(frames: Any) -> Any:  # a backend whose batched call fails (e.g. out of memory)
        if len(frames) > 1:
            raise RuntimeError("batched encode failed")
        return encode(frames)

    pipe.backend.encode = encode_one_at_a_time  # type: ignore[method-assign]
    lane2 = pipe.worker.lanes["cam2"]

    def broken_add_step(*args: Any) -> None:  # cam2's memory fails on every frame, and then its DTD reset fails too
        raise RuntimeError("memory broke")

    def broken_reset() -> None:
        raise RuntimeError("reset broke")

    lane2.memory.add_step = broken_add_step  # type: ignore[method-assign]
    lane2.dtd.reset = broken_reset  # type: ignore[method-assign]
    batch, reset = _count("worker.batch_encode"), _count("worker.dtd_reset")
    pipe.start()
    try:
        for i, (pts, rgb) in enumerate(_frames(3)):
            await eventually(lambda: not any(len(lane.frames) for lane in pipe.worker.lanes.values()), what="taken")
            for cam in ("cam1", "cam2"):  # both before the worker's next turn: one batch of two frames
                pipe.worker.lanes[cam].frames.put_nowait(Frame(cam, i, pts, time.time(), rgb + i))
        await eventually(lambda: pipe.service.counters["cam2"].frames_failed >= 3, what="cam2's frames failed")
        await eventually(lambda: pipe.service.counters["cam1"].tokens_total > 0, what="cam1's frames went through")
    finally:
        await pipe.stop()
    assert _count("worker.batch_encode") > batch
    assert _count("worker.dtd_reset") >= reset + 3
    health = pipe.service.health()
    assert health["contained_errors"]["worker.dtd_reset"] >= 3
    metrics = ServerMetrics(pipe.service).render().decode()
    assert 'livesight_contained_errors_total{kind="worker.dtd_reset"}' in metrics
    resets = [r for r in caplog.records if "worker.dtd_reset" in r.getMessage()]
    assert len(resets) <= 1  # logged once per kind (a count that reached 10 here would add one more line)


class _Unclosable:
    def close(self) -> None:
        raise OSError("close failed")


async def test_a_source_that_cannot_be_closed_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def open_unclosable(spec: Any) -> tuple[StreamInfo, Iterator[tuple[float, np.ndarray]], _Unclosable]:
        return (
            StreamInfo("fake", 64, 48, 10.0),
            ((i / 10, np.zeros((48, 64, 3), np.uint8)) for i in range(3)),
            (_Unclosable()),
        )

    monkeypatch.setattr(camera_module, "open_source", open_unclosable)
    before = _count("camera.close")
    states: list[Any] = []
    cam = Camera(CameraConfig(id="c", source="clip.mp4", realtime=False), on_status=states.append)
    await cam.run()  # a file that ends has ended
    assert states[-1].state is CameraState.ENDED
    assert _count("camera.close") == before + 1
