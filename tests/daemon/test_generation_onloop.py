"""The scheduler's execution seam: a job whose work is a coroutine (`OnLoop`, as a remote model server's would be)
runs as a task of its own, so the worker's thread goes on with frames meanwhile; at most `max_async_jobs` run at
once, the rest wait in the queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from livesight.config import DTDConfig, MemoryConfig, SceneConfig
from livesight.daemon.generation.queue import CaptionJob, Job, OnLoop, Work
from livesight.daemon.model_worker import CameraLane, ModelWorker, WorkerSettings
from livesight.daemon.service import Service
from livesight.memory.camera_memory import CameraMemory
from livesight.memory.scene_detector import SceneDetector
from livesight.model.backend import GenerationResult
from livesight.model.dtd import DTD
from livesight.model.echo import EchoBackend
from livesight.streaming.queues import DropOldestQueue
from livesight.types import Frame, ResponseDelta, ResponseDone, ResponseEvent


class RemoteLikeWorker(ModelWorker):
    """Answers every question with a coroutine that waits for `gate` (a remote server taking its time)."""

    gate: asyncio.Event
    running = 0
    most = 0

    def _work_for(self, job: Job, emit: Callable[[ResponseEvent], None] | None) -> Work[Any]:
        if isinstance(job, CaptionJob):
            return super()._work_for(job, emit)

        async def answer() -> GenerationResult:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await self.gate.wait()
                if emit is not None:
                    emit(ResponseDelta(job.response_id, "remote"))
                return GenerationResult("remote", 1, 1, 5.0, stopped=False)
            finally:
                self.running -= 1

        return OnLoop(answer)


async def test_coroutine_work_leaves_the_worker_thread_to_frames() -> None:
    backend = EchoBackend(image_size=56)
    service = Service(["cam"])
    frames: DropOldestQueue[Frame] = DropOldestQueue(8)
    lane = CameraLane(
        "cam",
        frames,
        DTD(DTDConfig(mode="pixel", threshold=0.05), backend.info.token_px),
        CameraMemory("cam", backend, MemoryConfig(database=None)),
        SceneDetector(SceneConfig(), "cam"),
        proactive=False,
    )
    worker = RemoteLikeWorker(WorkerSettings(max_async_jobs=2), backend, service, [lane])
    worker.gate = asyncio.Event()
    run = asyncio.create_task(worker.run(), name="worker")
    answers: list[list[ResponseEvent]] = []

    async def ask(i: int) -> None:
        events: list[ResponseEvent] = []
        answers.append(events)
        async for ev in service.query(camera="cam", text=f"question {i}", query_id=f"q{i}"):
            events.append(ev)

    askers = [asyncio.create_task(ask(i), name=f"ask-{i}") for i in range(3)]
    try:
        rng = np.random.default_rng(0)
        for i in range(10):  # frames keep flowing while the questions wait on the "server"
            frames.put_nowait(Frame("cam", i, i / 2, time.time(), rng.integers(0, 255, (56, 56, 3), np.uint8)))
            await asyncio.sleep(0.02)
        k = service.counters["cam"]
        async with asyncio.timeout(10):
            while k.frames_encoded + k.encoder_skipped < 10:  # noqa: ASYNC110 - counters expose no event
                await asyncio.sleep(0.01)
        assert worker.running == 2 and len(service.responses) == 1  # two running, the third waits for a slot
        worker.gate.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*askers)
    finally:
        worker.gate.set()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert worker.most == 2
    for events in answers:
        assert isinstance(events[-1], ResponseDone) and events[-1].text == "remote"
        assert [e.text for e in events if isinstance(e, ResponseDelta)] == ["remote"]
