"""The memory belongs to the model worker's thread: the event loop (/healthz, stats, /metrics, the demo printer) reads
only the immutable statistics snapshots the worker publishes, never the memory while the worker changes it."""

from __future__ import annotations

import asyncio
import threading
import time
from types import MappingProxyType
from typing import Any

import pytest

from livesight.memory.camera_memory import CameraMemory
from livesight.streaming.demo_stream import demo_frames
from livesight.types import Frame
from tests.helpers import eventually
from tests.pipeline import pipeline


class ThreadRecordingMemory(CameraMemory):
    """The real memory, recording which thread asks for its statistics."""

    callers: list[str]

    def stats(self) -> dict[str, Any]:
        self.callers.append(threading.current_thread().name)
        return super().stats()


async def test_the_loop_reads_only_published_snapshots() -> None:
    pipe = pipeline(["cam1"], max_new_tokens=4)
    lane = pipe.worker.lanes["cam1"]
    lane.memory.__class__ = ThreadRecordingMemory  # the same object, its stats() now says who calls it
    memory: Any = lane.memory
    memory.callers = []
    pipe.start()
    try:
        frames = demo_frames()
        for i in range(6):
            pts, rgb = next(frames)
            await eventually(lambda: len(lane.frames) == 0, what="the worker took the frame")
            lane.frames.put_nowait(Frame("cam1", i, pts, time.time(), rgb))
            # the loop reads while the worker works: stats (WebSocket, /metrics), /healthz, the demo printer's view
            for _ in range(20):
                pipe.service.stats()
                pipe.service.health()
                pipe.service.snapshots()
                await asyncio.sleep(0)
        await eventually(lambda: pipe.service.counters["cam1"].tokens_total > 0, what="frames processed")
        answer = [e async for e in pipe.service.query(camera="cam1", text="say: ok", query_id="q1")]
        assert answer[-1].status.value == "completed"
        await eventually(lambda: pipe.service.stats().cameras["cam1"]["kv_tokens"] > 0, what="a snapshot with news")
    finally:
        await pipe.stop()
    assert memory.callers, "the worker published no snapshot"
    assert {name.split("_")[0] for name in memory.callers} == {"livesight-model"}, set(memory.callers)
    snap = pipe.worker.lane_stats()["cam1"].memory
    assert isinstance(snap, MappingProxyType)
    with pytest.raises(TypeError):
        snap["memory_tokens"] = 0  # type: ignore[index]


async def test_a_failing_statistics_call_keeps_the_last_snapshot() -> None:
    pipe = pipeline(["cam1"])
    lane = pipe.worker.lanes["cam1"]
    before = lane.memory_stats

    def broken() -> dict[str, Any]:
        raise RuntimeError("stats broke")

    from livesight.errors import contained_counts  # (new with the snapshots)

    lane.memory.stats = broken  # type: ignore[method-assign]
    failures = contained_counts().get("worker.memory_stats", 0)
    lane.snapshot()
    assert lane.memory_stats is before
    assert contained_counts()["worker.memory_stats"] == failures + 1
    await pipe.stop()
