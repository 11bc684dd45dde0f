"""A burst of scene changes on a busy worker: every frame of every camera is a boundary (a detector that says so),
each asks for a proactive message and a caption, generation is slow. The scheduler keeps generation to its share
of the worker while frames wait (they are processed all along), merges the captions, sheds the proactive messages
that a newer boundary superseded or that went stale — counted, in /healthz's worker part."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import numpy as np
import pytest

from livesight.config import DTDConfig, MemoryConfig
from livesight.daemon.model_worker import CameraLane, ModelWorker, WorkerSettings
from livesight.daemon.service import Service
from livesight.memory.camera_memory import CameraMemory
from livesight.model.dtd import DTD
from livesight.model.echo import EchoBackend
from livesight.streaming.queues import DropOldestQueue
from livesight.types import DTDStep, Frame, SceneChange

CAMERAS = ("a", "b", "c", "d")

# what it checks is a share of the machine's throughput over seconds: run alone (make test's serial run)
pytestmark = pytest.mark.serial


class EveryFrameIsACut:
    """A small fake detector: a boundary at every frame."""

    def __init__(self) -> None:
        self.scene = 1

    def update(self, step: DTDStep, frame: np.ndarray | None = None, missed: int = 0) -> SceneChange:
        self.scene += 1
        return SceneChange(step.camera, self.scene, step.pts, step.wall_time, 9.0)


async def burst(share: float, seconds: float = 6.0) -> tuple[dict, dict[str, int], int]:
    backend = EchoBackend(image_size=56, token_delay_s=0.01)  # ~0.1-0.2 s per generation: slow
    service = Service(list(CAMERAS), generation_share=share)
    lanes = [
        CameraLane(
            camera=c,
            frames=DropOldestQueue[Frame](4),
            dtd=DTD(DTDConfig(mode="pixel", threshold=0.05), backend.info.token_px),
            memory=CameraMemory(c, backend, MemoryConfig(database=None)),
            detector=EveryFrameIsACut(),
            proactive=True,
        )
        for c in CAMERAS
    ]
    settings = WorkerSettings(max_new_tokens=16, proactive_min_interval_s=0.0)
    worker = ModelWorker(settings, backend, service, lanes)
    rng = np.random.default_rng(0)
    fed = 0

    async def feed() -> None:  # 4 cameras at 10 fps, every frame different
        nonlocal fed
        for i in itertools.count():
            fed = i + 1
            for lane in lanes:
                rgb = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
                lane.frames.put_nowait(Frame(lane.camera, i, i / 10, time.time(), rgb))  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(worker.run(), name="worker"), asyncio.create_task(feed(), name="feed")]
    try:
        await asyncio.sleep(seconds)
        health = worker.health()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    processed = {c: k.frames_encoded + k.encoder_skipped for c, k in service.counters.items()}
    return health["generation"], processed, fed


async def test_a_burst_of_scene_changes_cannot_starve_frames() -> None:
    gen, processed, fed = await burst(0.3)
    assert min(processed.values()) >= 0.75 * fed, (processed, fed)  # frames went through all along …
    assert gen["held_by_budget"] > 0  # … because generation gave way to them whenever they waited
    assert gen["captions_merged"] > 0 and gen["proactive_shed_superseded"] + gen["proactive_shed_stale"] > 0
    assert gen["proactive_started"] > 0  # the messages that were not superseded still went out
    # without the bound (share 1, a FIFO of generation as before): the frames wait behind it and are dropped
    unbounded, processed, fed = await burst(1.0)
    assert unbounded["held_by_budget"] == 0 and max(processed.values()) < 0.5 * fed, (processed, fed)
