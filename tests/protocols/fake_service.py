"""A small scripted implementation of ServiceAPI for protocol tests (no model, no cameras).

Answers are deterministic: "answer to <question>" split into word deltas, each after `delta_delay` seconds.
Tests drive broadcasts with `publish(...)`, `proactive(...)`, `watch_hit(...)`; `gate` (when set) holds every
query before its first delta so tests can keep queries running.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from livesight.protocols.api import BroadcastEvent, StatsSnapshot
from livesight.types import (
    CameraState,
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseEvent,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)

_CLOSED = object()


class FakeSubscription:
    def __init__(self, owner: FakeService, maxsize: int) -> None:
        self._owner = owner
        self._maxsize = maxsize
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.overflowed = False
        self.closed = False

    def offer(self, event: BroadcastEvent) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._maxsize:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner.subs.discard(self)
            self._queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[BroadcastEvent]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]


@dataclass
class FakeService:
    cameras: list[str] = field(default_factory=lambda: ["cam1", "cam2"])
    delta_delay: float = 0.0
    max_queued: int = 1000
    status: str = "ok"
    gate: asyncio.Event | None = None
    subs: set[FakeSubscription] = field(default_factory=set)
    watches: dict[str, tuple[str, str]] = field(default_factory=dict)  # watch id → (camera, text)
    asked: list[tuple[str, str, str | None]] = field(default_factory=list)  # (camera, text, query_id)
    cancelled: list[str] = field(default_factory=list)
    running: dict[str, asyncio.Event] = field(default_factory=dict)  # response id → cancel flag
    frames: int = 0
    states: dict[str, CameraState] = field(default_factory=dict)  # health() says live for the others
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # ---- ServiceAPI ----------------------------------------------------------------------------------------

    def camera_ids(self) -> list[str]:
        return list(self.cameras)

    def health(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cameras": {
                c: {"state": self.states.get(c, CameraState.LIVE).value, "reason": "rtsp://user:secret@cam"}
                for c in self.cameras
            },
            "model": {"name": "tiny-random", "random_weights": True},
        }

    def stats(self) -> StatsSnapshot:
        cams = {
            c: {
                "state": "live",
                "frames_in": self.frames,
                "frames_dropped": 2,
                "tokens_total": 512,
                "tokens_kept": 128,
                "drop_ratio": 0.75,
                "kv_tokens": 64,
            }
            for c in self.cameras
        }
        return StatsSnapshot(
            wall_time=time.time(),
            cameras=cams,
            totals={"tokens_total": 512 * len(cams), "responses_refused": 1, "ttft_ms_median": float("nan")},
        )

    def subscribe(self, *, maxsize: int) -> FakeSubscription:
        sub = FakeSubscription(self, maxsize)
        self.subs.add(sub)
        return sub

    async def query(self, *, camera: str | None, text: str, query_id: str | None) -> AsyncIterator[ResponseEvent]:
        cam = self._camera(camera)
        if len(self.running) >= self.max_queued:
            raise OverflowError(f"too many questions waiting ({self.max_queued})")
        rid = f"resp_{next(self._ids)}"
        cancel = asyncio.Event()
        self.running[rid] = cancel
        self.asked.append((cam, text, query_id))
        try:
            yield ResponseCreated(rid, cam, ResponseKind.QUERY, query_id=query_id)
            if self.gate is not None:
                await self._wait_either(self.gate, cancel)
            words = f"answer to {text}".split()
            out: list[str] = []
            for i, w in enumerate(words):
                if cancel.is_set():
                    yield ResponseDone(rid, ResponseStatus.CANCELLED, " ".join(out))
                    return
                if self.delta_delay:
                    await asyncio.sleep(self.delta_delay)
                piece = w if i == 0 else " " + w
                out.append(w)
                yield ResponseDelta(rid, piece)
            yield ResponseDone(rid, ResponseStatus.COMPLETED, " ".join(out), 10, len(out), ttft_ms=12.5)
        finally:
            self.running.pop(rid, None)

    def cancel(self, response_id: str) -> bool:
        flag = self.running.get(response_id)
        if flag is None or flag.is_set():
            return False
        flag.set()
        self.cancelled.append(response_id)
        return True

    def add_watch(self, *, camera: str | None, text: str, watch_id: str) -> None:
        cam = self._camera(camera)
        if watch_id not in self.watches and len(self.watches) >= 64:
            raise OverflowError("at most 64 watches")
        self.watches[watch_id] = (cam, text)

    def remove_watch(self, watch_id: str) -> bool:
        return self.watches.pop(watch_id, None) is not None

    # ---- test drivers --------------------------------------------------------------------------------------

    def publish(self, event: BroadcastEvent) -> None:
        for sub in list(self.subs):
            sub.offer(event)

    def scene(self, camera: str = "cam1", scene: int = 2) -> SceneChange:
        ev = SceneChange(camera, scene, pts=12.0, wall_time=time.time(), score=4.2)
        self.publish(ev)
        return ev

    def camera_state(self, camera: str = "cam1", state: CameraState = CameraState.RECONNECTING) -> None:
        self.publish(CameraStatus(camera, state, "connection refused", time.time()))

    def proactive(self, text: str, camera: str = "cam1", scene: int = 2) -> str:
        return self._broadcast_response(ResponseKind.PROACTIVE, text, camera, scene=scene)

    def watch_hit(self, watch_id: str, text: str = "yes, a person") -> str:
        camera = self.watches[watch_id][0]
        return self._broadcast_response(ResponseKind.WATCH, text, camera, watch_id=watch_id)

    def _broadcast_response(
        self, kind: ResponseKind, text: str, camera: str, *, scene: int | None = 2, watch_id: str | None = None
    ) -> str:
        rid = f"resp_b{next(self._ids)}"
        self.publish(ResponseCreated(rid, camera, kind, watch_id=watch_id, scene=scene, pts=12.0))
        for i, w in enumerate(text.split()):
            self.publish(ResponseDelta(rid, w if i == 0 else " " + w))
        self.publish(ResponseDone(rid, ResponseStatus.COMPLETED, text, 5, len(text.split()), ttft_ms=3.0))
        return rid

    def _camera(self, camera: str | None) -> str:
        if camera is None:
            return self.cameras[0]
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r} (cameras: {', '.join(self.cameras)})")
        return camera

    @staticmethod
    async def _wait_either(a: asyncio.Event, b: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            ta = tg.create_task(a.wait(), name="fake:gate")
            tb = tg.create_task(b.wait(), name="fake:cancel")
            done = asyncio.Event()
            ta.add_done_callback(lambda _: done.set())
            tb.add_done_callback(lambda _: done.set())
            await done.wait()
            ta.cancel()
            tb.cancel()
