"""The capture in the model worker's frame path (echo backend, exact synthetic frames with cuts): closed entries
reach the worker's publishing step on the loop; a tracker that fails costs its entry, never the frame."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from livesight.config import parse_config
from livesight.daemon.model_worker import CameraLane, ModelWorker, WorkerSettings
from livesight.daemon.service import Service
from livesight.errors import contained_counts
from livesight.memory.camera_memory import CameraMemory
from livesight.memory.scene_detector import SceneDetector
from livesight.model.dtd import DTD
from livesight.model.echo import EchoBackend
from livesight.streaming.queues import DropOldestQueue
from livesight.timeline.keyframes import ClosedEntry, EntryTracker
from livesight.types import Frame


class Broken:
    def update(self, *a: Any, **k: Any) -> list[Any]:
        raise RuntimeError("a bug in the tracker")


def worker_with(entries: Any) -> ModelWorker:
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo"}],
            "model": {"backend": "echo"},
            "memory": {"database": None},
            "dtd": {"mode": "pixel"},
        },
        origin="test",
    )
    backend = EchoBackend()
    lane = CameraLane(
        camera="cam",
        frames=DropOldestQueue(4),
        dtd=DTD(cfg.dtd_for(cfg.cameras[0]), backend.info.token_px),
        memory=CameraMemory("cam", backend, cfg.memory),
        detector=SceneDetector(cfg.scenes, "cam"),
        proactive=False,
        entries=entries,
    )
    return ModelWorker(WorkerSettings.from_config(cfg), backend, Service(["cam"]), [lane])


def picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((56, 56, 1), np.uint8))  # 448x448


def frames(seconds: float, fps: float = 2.0, scene_s: float = 4.0) -> list[Frame]:
    """A cut every scene_s seconds."""
    pics = [picture(s) for s in range(int(seconds / scene_s) + 1)]
    return [Frame("cam", i, i / fps, 1000.0 + i / fps, pics[int(i / fps / scene_s)]) for i in range(int(seconds * fps))]


async def test_closed_entries_reach_the_publishing_step() -> None:
    tracker = EntryTracker("cam", scene=1, chunk_s=300.0)
    w = worker_with(tracker)
    got: list[ClosedEntry] = []
    w.on_entries = lambda closed: got.extend(closed)
    for f in frames(10.0):  # cuts at 4 and 8 s
        w._publish(w._process_frames([f]))
    assert [(c.entry.scene, c.entry.pts, c.entry.end_pts) for c in got] == [(1, 0.0, 4.0), (2, 4.0, 8.0)]
    assert all(1 <= len(c.frames) <= 3 and c.frames[0].shape[2] == 3 for c in got)


async def test_a_failing_tracker_costs_the_entry_not_the_frame() -> None:
    w = worker_with(Broken())
    before = contained_counts().get("timeline.capture", 0)
    fs = frames(3.0)
    t0 = time.monotonic()
    outcomes = w._process_frames(fs)
    assert time.monotonic() - t0 < 60
    assert all(o.step is not None and o.error is None for o in outcomes)
    assert contained_counts()["timeline.capture"] == before + len(fs)
