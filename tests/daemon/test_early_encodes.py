"""A frame the cut tap holds is encoded ahead (while the tap decides); when it is sampled, the frame pipeline uses
that encoding instead of encoding it again, with the same outcome. Another frame of the camera, or a newer
candidate, does not use it."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from livesight.config import DTDConfig, MemoryConfig
from livesight.daemon.frame_pipeline import CameraLane, FramePipeline
from livesight.daemon.frame_slots import FrameSlots
from livesight.memory.camera_memory import CameraMemory
from livesight.model.backend import EncodedFrame
from livesight.model.dtd import DTD
from livesight.model.echo import EchoBackend
from livesight.streaming.queues import DropOldestQueue
from livesight.types import Frame


class CountingBackend(EchoBackend):
    """The echo backend, counting the frames its vision encoder sees."""

    encoded = 0

    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        self.encoded += len(frames)
        return super().encode(frames)


def pipeline() -> tuple[FramePipeline, CountingBackend]:
    backend = CountingBackend(image_size=56)
    lane = CameraLane(
        camera="c",
        frames=DropOldestQueue[Frame](4),
        dtd=DTD(DTDConfig(mode="pixel", threshold=0.05), backend.info.token_px),
        memory=CameraMemory("c", backend, MemoryConfig(database=None)),
        detector=_NoCuts(),
        proactive=False,
    )
    return FramePipeline(backend, {"c": lane}, FrameSlots()), backend


class _NoCuts:
    def update(self, step: object, frame: object = None, missed: int = 0) -> None:
        return None


def frame(i: int, rgb: np.ndarray) -> Frame:
    return Frame("c", i, i * 0.5, time.time(), rgb)


def test_a_frame_encoded_ahead_is_not_encoded_again() -> None:
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 255, (56, 56, 3), dtype=np.uint8) for _ in range(3)]
    plain, plain_backend = pipeline()
    ahead, ahead_backend = pipeline()
    ahead.early.put("c", 1 * 0.5, rgbs[1])
    assert len(ahead.early) == 1
    job = ahead.early.next()
    assert job is not None and len(ahead.early) == 0
    ahead.early.encode(*job)
    assert ahead_backend.encoded == 1 and ahead.early.made == 1
    for i, rgb in enumerate(rgbs):
        a = plain.process([(frame(i, rgb), 0)])[0]
        b = ahead.process([(frame(i, rgb), 0)])[0]
        assert a.step is not None and b.step is not None
        assert (a.step.kept, a.step.total, a.step.encoder_skipped) == (
            b.step.kept,
            b.step.total,
            b.step.encoder_skipped,
        )
    assert ahead.early.used == 1
    assert ahead_backend.encoded == plain_backend.encoded  # frame 1: encoded once, ahead, and not again


def test_an_encoding_ahead_is_only_for_its_frame() -> None:
    rng = np.random.default_rng(1)
    p, _ = pipeline()
    rgb = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
    p.early.put("c", 0.5, rgb)
    p.early.encode(*p.early.next())  # type: ignore[misc]
    assert p.early.take("c", 1.0) is None  # another frame of the camera
    p.early.put("c", 1.5, rgb)  # a newer candidate replaces the one encoded
    assert p.early.take("c", 0.5) is None
    p.early.encode(*p.early.next())  # type: ignore[misc]
    assert p.early.take("c", 1.5) is not None and p.early.take("c", 1.5) is None  # used once


async def test_the_worker_encodes_ahead_only_when_the_camera_is_not_behind() -> None:
    from livesight.daemon.model_worker import ModelWorker, WorkerSettings
    from livesight.daemon.service import Service

    backend = CountingBackend(image_size=56)
    frames = DropOldestQueue[Frame](4)
    lane = CameraLane(
        camera="c",
        frames=frames,
        dtd=DTD(DTDConfig(mode="pixel", threshold=0.05), backend.info.token_px),
        memory=CameraMemory("c", backend, MemoryConfig(database=None)),
        detector=_NoCuts(),
        proactive=False,
    )
    worker = ModelWorker(WorkerSettings(), backend, Service(["c"]), [lane])
    rgb = np.zeros((56, 56, 3), np.uint8)
    worker.pre_encode("c", 1.0, rgb)  # nothing waits: encoded ahead
    assert len(worker.pipeline.early) == 1 and worker.pipeline.early.skipped == 0
    worker.pipeline.early.next()
    frames.put_nowait(frame(0, rgb))  # a frame waits: the worker is behind
    worker.pre_encode("c", 1.5, rgb)
    assert len(worker.pipeline.early) == 0 and worker.pipeline.early.skipped == 1
