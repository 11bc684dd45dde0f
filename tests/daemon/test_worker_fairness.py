"""The model worker under a flood of questions: answers keep priority, but video still gets every other turn,
so frames are processed (memory and scene detection keep up) instead of starving."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import pytest

from livesight.config import parse_config
from livesight.daemon.model_worker import CameraLane, ModelWorker, WorkerSettings
from livesight.daemon.service import Service
from livesight.memory.camera_memory import CameraMemory
from livesight.memory.scene_detector import SceneDetector
from livesight.model.dtd import DTD
from livesight.streaming.demo_stream import demo_frames
from livesight.streaming.queues import DropOldestQueue
from livesight.types import Frame, ResponseDone
from tests.helpers import tiny_backend

# what it checks is a share of the machine's throughput over seconds: run alone (make test's serial run)
pytestmark = pytest.mark.serial


async def test_question_flood_does_not_starve_frames() -> None:
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo"}],
            "model": {"preset": "tiny-random", "max_new_tokens": 24},
            "memory": {"database": None},
            "proactive": {"enabled": False},
        },
        origin="test",
    )
    backend = tiny_backend()  # the session's one tiny model (tests/helpers.py)
    service = Service(["cam"], response_queue_size=64)
    frames: DropOldestQueue[Frame] = DropOldestQueue(4)
    lane = CameraLane(
        camera="cam",
        frames=frames,
        dtd=DTD(cfg.dtd_for(cfg.cameras[0])),
        memory=CameraMemory("cam", backend, cfg.memory),
        detector=SceneDetector(cfg.scenes, "cam"),
        proactive=False,
    )
    worker = ModelWorker(WorkerSettings.from_config(cfg), backend, service, [lane])
    answers = 0

    async def feed() -> None:  # a 10 fps camera
        for i, (pts, rgb) in zip(itertools.count(), demo_frames(), strict=False):
            frames.put_nowait(Frame("cam", i, pts, time.time(), rgb))
            await asyncio.sleep(0.1)

    async def flood(k: int) -> None:  # back-to-back questions: the worker always has one waiting
        nonlocal answers
        for j in itertools.count():
            async for ev in service.query(camera="cam", text="what is happening?", query_id=f"c{k}q{j}"):
                if isinstance(ev, ResponseDone):
                    answers += 1

    tasks = [asyncio.create_task(worker.run(), name="worker"), asyncio.create_task(feed(), name="feed")]
    tasks += [asyncio.create_task(flood(k), name=f"flood-{k}") for k in range(4)]
    try:
        await asyncio.sleep(6.0)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    k = service.counters["cam"]
    processed = k.frames_encoded + k.encoder_skipped
    assert answers >= 4  # questions were answered all along
    # without the alternation, a permanent queue of questions would leave (almost) no turn for frames
    assert processed >= min(answers, 20), (processed, answers)
