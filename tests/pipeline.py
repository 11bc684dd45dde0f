"""The daemon's real Service and ModelWorker for protocol tests, with a small fake backend and no cameras.

Only the model is fake: `GatedEcho`, the echo backend (`livesight.model.echo`: a question `say: TEXT` is answered
TEXT, word by word; any other question gets the echo template, which ends with `You asked: QUESTION`) plus a
`gate` that holds every generation before its first word until set (cancellable meanwhile), so tests can keep
queries running, and `token_delay_s` (seconds per word). It records what the model was asked (`asked`: camera and
question, in order) and how each generation ended (`results`). Lanes have empty frame queues: nothing happens
unless a test drives it.

Drivers publish what the pipeline publishes: `scene(...)`, `camera_state(...)`, `publish(event)`; `proactive(...)`
and `watch_hit(...)` queue the response jobs the worker queues at a scene change (mirroring
`ModelWorker._scene_changed`), and the real worker answers them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from livesight.config import Config, parse_config
from livesight.daemon.generation.responses import ResponseJob
from livesight.daemon.model_worker import CameraLane, ModelWorker, WorkerSettings
from livesight.daemon.service import Service
from livesight.memory.camera_memory import CameraMemory
from livesight.memory.scene_detector import SceneDetector
from livesight.model.backend import ContextMark, GenerationResult, Recalled
from livesight.model.dtd import DTD
from livesight.model.echo import EchoBackend, EchoContext
from livesight.protocols.contract.api import BroadcastEvent
from livesight.streaming.queues import DropOldestQueue
from livesight.types import CameraState, CameraStatus, Frame, ResponseKind, SceneChange


class GatedContext(EchoContext):
    def __init__(self, owner: GatedEcho) -> None:
        super().__init__("")
        self._owner = owner

    def generate(
        self,
        question: str,
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_text: Callable[[str], None] | None = None,
        as_of: ContextMark | None = None,
        recalled: Recalled | None = None,
    ) -> GenerationResult:
        owner = self._owner
        owner.asked.append((owner.camera_of(self), question))
        gate = owner.gate
        while gate is not None and not gate.wait(0.01):  # the worker thread waits, never the loop
            if should_stop():
                result = GenerationResult("", len(question.split()), 0, 0.0, stopped=True)
                owner.results.append(result)
                return result
        self._delay = owner.token_delay_s
        result = super().generate(
            question,
            max_new_tokens=max_new_tokens,
            should_stop=should_stop,
            on_text=on_text,
            as_of=as_of,
            recalled=recalled,
        )
        owner.results.append(result)
        return result


class GatedEcho(EchoBackend):
    def __init__(self) -> None:
        super().__init__(image_size=56)
        self.gate: threading.Event | None = None
        self.lanes: dict[str, CameraLane] = {}
        self.asked: list[tuple[str, str]] = []  # (camera, question) of every generation, in order
        self.results: list[GenerationResult] = []  # how every generation ended, in order

    def camera_of(self, ctx: EchoContext) -> str:
        """The camera whose memory holds this context (the one being asked)."""
        return next((c for c, lane in self.lanes.items() if lane.memory.ctx is ctx), "?")

    def new_context(self) -> GatedContext:
        return GatedContext(self)


@dataclass
class Pipeline:
    cfg: Config
    service: Service
    backend: GatedEcho
    worker: ModelWorker
    task: asyncio.Task[None] | None = None
    _frames: int = 0

    # ---- drivers -------------------------------------------------------------------------------------------

    def publish(self, event: BroadcastEvent) -> None:
        self.service.hub.publish(event)

    def scene(self, camera: str = "cam1", scene: int = 2) -> SceneChange:
        change = SceneChange(camera, scene, pts=12.0, wall_time=time.time(), score=4.2)
        self.publish(change)
        return change

    def camera_state(self, camera: str = "cam1", state: CameraState = CameraState.RECONNECTING) -> None:
        self.service.set_state(CameraStatus(camera, state, "connection refused", time.time()))

    def proactive(self, text: str, camera: str = "cam1", scene: int = 2) -> str:
        hub = self.service.hub
        job = ResponseJob(camera, ResponseKind.PROACTIVE, f"say: {text}", hub.publish, scene=scene, pts=12.0)
        self.service.responses.put(job)  # the worker announces it (response.created) when it starts
        return job.response_id

    def watch_hit(self, watch_id: str, text: str = "yes, a person") -> str:
        w = self.service.watches[watch_id]
        job = ResponseJob(
            w.camera, ResponseKind.WATCH, f"say: {text}", self.service.hub.publish, watch_id=watch_id, scene=2, pts=12.0
        )
        self.service.responses.put(job)
        return job.response_id

    def frame(self, camera: str, rgb: np.ndarray, pts: float) -> None:
        """A sampled frame into the camera's queue, as a camera would put it: the worker encodes it (DTD, memory)."""
        lane = self.worker.lanes[camera]
        lane.frames.put_nowait(Frame(camera, self._frames, pts, time.time(), rgb))  # type: ignore[attr-defined]
        self._frames += 1

    def hold(self) -> threading.Event:
        """Hold every generation before its first word until the returned gate is set."""
        self.backend.gate = threading.Event()
        return self.backend.gate

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Pipeline:
        self.task = asyncio.create_task(self.worker.run(), name="model-worker")
        return self

    async def stop(self) -> None:
        if self.backend.gate is not None:
            self.backend.gate.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def pipeline(
    cameras: Sequence[str] = ("cam1", "cam2"), *, response_queue_size: int = 32, max_new_tokens: int = 64
) -> Pipeline:
    """Build (not start) the pipeline; `.start()` runs its model worker on the running loop."""
    cfg = parse_config(
        {
            "cameras": [{"id": c, "source": "builtin:demo"} for c in cameras],
            "model": {"backend": "echo", "max_new_tokens": max_new_tokens},
            "memory": {"database": None},
            "proactive": {"min_interval_s": 0},
        },
        origin="test",
    )
    backend = GatedEcho()
    worker: ModelWorker | None = None
    service = Service(
        list(cameras),
        response_queue_size=response_queue_size,
        stats_source=lambda: worker.lane_stats() if worker is not None else {},
        model_info={"name": backend.info.name, "random_weights": True},
    )
    for c in cameras:  # as the cameras would announce once connected
        service.set_state(CameraStatus(c, CameraState.LIVE, "", time.time()))
    lanes = [
        CameraLane(
            camera=c.id,
            frames=DropOldestQueue[Frame](1),
            dtd=DTD(cfg.dtd_for(c), backend.info.token_px),
            memory=CameraMemory(c.id, backend, cfg.memory),
            detector=SceneDetector(cfg.scenes, c.id, dtd_mode=cfg.dtd_for(c).mode),
            proactive=True,
        )
        for c in cfg.cameras
    ]
    backend.lanes = {lane.camera: lane for lane in lanes}
    worker = ModelWorker(WorkerSettings.from_config(cfg), backend, service, lanes)
    service.ready = True
    return Pipeline(cfg, service, backend, worker)
