"""One batch of sampled frames through the model, in the model worker's thread: prepare → pixel pre-check → one
batched vision-encoder call (across cameras) → per frame: DTD → scene detector → pictures → timeline entries
(timeline/keyframes.py: the closed ones travel in the outcome, to be encoded in the picture thread) → memory.

A batch may hold several frames of one camera: DTD's pre-check plans them in order (model/dtd.py), so its decisions are
exactly those of one-by-one processing whatever the batch composition, and the batch still needs one encoder call.

Generation never runs here: a scene change closes the scene in memory (cheap) and its caption is scheduled by the
worker (generation/queue.py), as are the proactive message and the watch checks.

Statistics cross threads as immutable snapshots: the memory belongs to the worker thread, which, after each piece of
work on a camera (frames, maintenance, an answer), publishes `lane.memory_stats` (a read-only mapping, replaced
whole). The event loop (/healthz, stats, /metrics, the demo printer) reads only those snapshots, never the memory.

With a backend that has no vision encoder here (model.backend openai), DTD decides from pixels, no encode() call is
made, and the memory gets the pixels of the frames DTD kept (a remote memory sends them).

Fault containment: every frame runs inside its camera lane's error boundary: a frame that raises is reported as
failed (the worker counts it). A frame that failed before DTD decided leaves DTD as it was (the camera's later frames
in the batch are judged without it, and encoded on the spot if that now takes an encoding); one that failed in DTD
or later re-synchronises the lane (its next frame is kept whole). A batched encoder call that fails is retried frame
by frame, so one bad frame does not fail the others.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from livesight.daemon.early_encodes import EarlyEncodes
from livesight.daemon.frame_slots import FrameSlots
from livesight.errors import contain
from livesight.model.backend import Backend, EncodedFrame, GenerationResult, Recalled, Tokens
from livesight.types import DTDStep, Frame, SceneChange

log = logging.getLogger(__name__)

STAGES = ("prepare + pre-check", "vision encoder", "DTD decision", "scenes + memory + KV prefill")
STAGE_WINDOW = 4096


class FrameSource(Protocol):
    """What the worker needs from a camera: a non-blocking way to take its oldest waiting sampled frame."""

    def get_nowait(self) -> Frame: ...  # raises asyncio.QueueEmpty

    def __len__(self) -> int: ...  # frames waiting


class DTDLike(Protocol):
    def precheck(self, prepared: np.ndarray, pts: float) -> bool: ...

    def decide(
        self, camera: str, pts: float, wall_time: float, prepared: np.ndarray, encoded: EncodedFrame | None
    ) -> DTDStep: ...

    def needs_encoding(self, prepared: np.ndarray, pts: float) -> bool: ...

    def drop_plan(self) -> None: ...

    def reset(self) -> None: ...


class MemoryLike(Protocol):
    # tokens: the kept frame's encoding (None when not encoded); prepared: its pixels (a remote memory sends them)
    def add_step(self, step: DTDStep, tokens: Tokens | None, prepared: np.ndarray | None = None) -> None: ...

    def on_scene_change(self, change: SceneChange) -> bool: ...  # True: the closed scene wants a caption

    def caption_pending(self) -> int: ...  # blocking: caption the closed scenes waiting for one

    def answer(
        self,
        question: str,
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool],
        on_text: Callable[[str], None] | None,
        recalled: Recalled | None = None,  # past moments recalled into this question (passed only when some)
    ) -> GenerationResult: ...

    def maintenance_step(self) -> bool: ...  # True when it did some work

    def stats(self) -> dict[str, Any]: ...


class DetectorLike(Protocol):
    def update(self, step: DTDStep, frame: np.ndarray | None = None, missed: int = 0) -> SceneChange | None: ...


class EntriesLike(Protocol):
    """The camera's timeline entry tracker (timeline/keyframes.py): closed entries come back with their frames."""

    def update(
        self,
        pts: float,
        wall_time: float,
        rgb: np.ndarray,
        kept: int,
        change: SceneChange | None = None,
        *,
        full: bool = False,
    ) -> list[Any]: ...


@dataclass
class CameraLane:
    camera: str
    frames: FrameSource
    dtd: DTDLike
    memory: MemoryLike
    detector: DetectorLike
    proactive: bool
    entries: EntriesLike | None = None  # the timeline's entries and keyframes (None: no timeline)
    last_proactive: float = -1e18
    last_index: int | None = None  # Frame.index of the last frame taken (a jump: frames dropped or failed, a gap)
    step_ms: list[float] = field(default_factory=list)  # recent per-frame pipeline times (bounded)
    # the memory's statistics as of the worker's last work on this camera: written whole by the worker thread, read
    # by the event loop (the memory itself is the worker's alone)
    memory_stats: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def snapshot(self) -> None:
        """Publish the memory's statistics (in the worker thread, or before it starts): one reference replaced."""
        try:
            self.memory_stats = MappingProxyType(dict(self.memory.stats()))
        except Exception as e:  # statistics are informative: the previous snapshot stays
            contain("worker.memory_stats", e, log, f"camera {self.camera}: memory statistics")


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    camera: str
    step: DTDStep | None  # None when the frame failed
    change: SceneChange | None
    pipeline_ms: float
    error: Exception | None = None
    stage: str = ""  # where it failed
    caption: bool = False  # the scene change closed a scene that wants a caption
    frame_wall: float = 0.0  # when the frame was sampled (handed to the model's queue, time.time())
    start_wall: float = 0.0  # when its batch started
    done_wall: float = 0.0  # when its processing ended
    closed: tuple[Any, ...] = ()  # timeline entries the frame closed (ClosedEntry: the entry and its keyframes)


class _Failed(Exception):
    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(stage)
        self.stage, self.error = stage, error


class FramePipeline:
    """Runs in the model worker's thread only."""

    def __init__(self, backend: Backend, lanes: dict[str, CameraLane], pictures: FrameSlots) -> None:
        self.backend = backend
        self.lanes = lanes
        self.pictures = pictures
        self.early = EarlyEncodes(backend)  # frames the cut tap holds, encoded while it decides
        # per-frame time of each stage, last STAGE_WINDOW frames (for benchmarks)
        self.stage_ms: dict[str, deque[float]] = {k: deque(maxlen=STAGE_WINDOW) for k in STAGES}
        self._start_wall = 0.0
        # False (openai): DTD decides from pixels, no encode() call, and the memory gets the pixels of kept frames
        self.encodes = getattr(getattr(backend, "info", None), "vision_encoder", True)

    def process(self, frames: list[tuple[Frame, int]]) -> list[FrameOutcome]:
        """(frame, sampled frames of its camera missed just before it) → one outcome per frame, in order."""
        t0 = time.perf_counter()
        self._start_wall = time.time()
        prepared: list[np.ndarray | _Failed] = []
        need: list[bool] = []
        ahead: dict[int, EncodedFrame] = {}  # frames encoded ahead (the tap held them): not encoded again
        for i, (f, _) in enumerate(frames):
            got = self.early.take(f.camera, f.pts)
            if got is not None:
                ahead[i] = got[1]
            try:
                p = got[0] if got is not None else self.backend.prepare(f.rgb)
            except Exception as e:
                prepared.append(_Failed("prepare", e))
                need.append(False)
                continue
            prepared.append(p)
            try:
                need.append(self.lanes[f.camera].dtd.precheck(p, f.pts))
            except Exception as e:
                prepared[-1] = _Failed("pre-check", e)
                need.append(False)
        prep_ms = (time.perf_counter() - t0) * 1000 / len(frames)
        idx = [i for i, n in enumerate(need) if n and i not in ahead] if self.encodes else []
        encoded: list[EncodedFrame | _Failed | None] = [None] * len(frames)
        for i, e in ahead.items():
            encoded[i] = e if need[i] else None
        enc_ms = 0.0
        if idx:
            te = time.perf_counter()
            out = self._encode([prepared[i] for i in idx])  # type: ignore[misc]
            enc_ms = (time.perf_counter() - te) * 1000 / len(idx)
            for i, e in zip(idx, out, strict=True):
                encoded[i] = e
        outcomes = []
        for (f, missed), p, e in zip(frames, prepared, encoded, strict=True):
            outcomes.append(self._one(f, missed, p, e, prep_ms, enc_ms))
        for cam in {f.camera for f, _ in frames}:
            self.lanes[cam].snapshot()
        return outcomes

    def _one(
        self,
        f: Frame,
        missed: int,
        p: np.ndarray | _Failed,
        e: EncodedFrame | _Failed | None,
        prep_ms: float,
        enc_ms: float,
    ) -> FrameOutcome:
        ts = time.perf_counter()
        lane = self.lanes[f.camera]
        caption = False
        closed: tuple[Any, ...] = ()
        try:
            if isinstance(p, _Failed):
                raise p
            if isinstance(e, _Failed):
                # encoded because of a plan an earlier failed frame of this camera changed: maybe not needed now
                if _guarded("DTD", lane.dtd.needs_encoding, p, f.pts):
                    raise e
                e = None
            assert not isinstance(p, _Failed) and not isinstance(e, _Failed)
            if e is None and self.encodes and _guarded("DTD", lane.dtd.needs_encoding, p, f.pts):
                # an earlier frame of this camera in the batch failed, so the plan changed: encode it now
                e = _guarded("vision encoder", self._encode_one, p)
            step = _guarded("DTD", lane.dtd.decide, f.camera, f.pts, f.wall_time, p, e)
            tm = time.perf_counter()
            change = _guarded("scene detector", lane.detector.update, step, p, missed)  # p: for its thumbnail
            _guarded("pictures", self.pictures.put, step, p, change)  # latest frame, scene starts
            closed = self._entries(lane, step, p, change)
            if change is not None:  # closes the scene (its caption is scheduled, as of the scene's end)
                caption = _guarded("memory", lane.memory.on_scene_change, change)
            tokens = e.tokens if e is not None and not step.encoder_skipped else None
            if self.encodes:
                _guarded("memory", lane.memory.add_step, step, tokens)
            else:  # a remote memory sends the pixels of what DTD kept
                _guarded("memory", lane.memory.add_step, step, None, p)
        except _Failed as fail:
            try:
                if fail.stage in ("prepare", "pre-check", "vision encoder"):
                    lane.dtd.drop_plan()  # DTD never saw it: the camera's next frames are judged without it
                else:
                    lane.dtd.reset()  # DTD or later may be half done: the next frame is kept whole
            except Exception as e:  # the frame already failed (counted); its DTD clean-up failing is one more
                contain("worker.dtd_reset", e, log, f"camera {f.camera}: resetting DTD after a failed frame")
            return FrameOutcome(
                f.camera, None, None, 0.0, fail.error, fail.stage, frame_wall=f.wall_time, closed=closed
            )
        stage = self.stage_ms
        enc = enc_ms if e is not None else 0.0
        stage["prepare + pre-check"].append(prep_ms)
        stage["vision encoder"].append(enc)
        stage["DTD decision"].append((tm - ts) * 1000)
        stage["scenes + memory + KV prefill"].append((time.perf_counter() - tm) * 1000)
        ms = prep_ms + (time.perf_counter() - ts) * 1000 + enc
        return FrameOutcome(
            f.camera,
            step,
            change,
            ms,
            caption=caption,
            frame_wall=f.wall_time,
            start_wall=self._start_wall,
            done_wall=time.time(),
            closed=closed,
        )

    @staticmethod
    def _entries(lane: CameraLane, step: DTDStep, p: np.ndarray, change: SceneChange | None) -> tuple[Any, ...]:
        """The frame into the camera's timeline tracker: the entries it closed. A failure here loses at most the
        entry's pictures, never the frame (counted)."""
        if lane.entries is None:
            return ()
        try:
            return tuple(lane.entries.update(step.pts, step.wall_time, p, step.kept, change, full=step.full))
        except Exception as e:
            contain("timeline.capture", e, log, f"camera {lane.camera}: timeline entry tracking")
            return ()

    def _encode_one(self, prepared: np.ndarray) -> EncodedFrame:
        return self.backend.encode([prepared])[0]

    def _encode(self, prepared: list[np.ndarray]) -> list[EncodedFrame | _Failed]:
        """One batched encoder call; when it fails, frame by frame, so one bad frame fails only itself."""
        try:
            out = self.backend.encode(prepared)
            if len(out) != len(prepared):
                raise RuntimeError(f"the encoder returned {len(out)} results for {len(prepared)} frames")
            return list(out)
        except Exception as e:
            if len(prepared) == 1:
                return [_Failed("vision encoder", e)]
            # retried frame by frame below: the frames that fail again are counted as failed frames
            contain("worker.batch_encode", e, log, f"the batched vision encoder call ({len(prepared)} frames)")
        results: list[EncodedFrame | _Failed] = []
        for p in prepared:
            try:
                results.append(self.backend.encode([p])[0])
            except Exception as e:
                results.append(_Failed("vision encoder", e))
        return results


def _guarded(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:
        raise _Failed(stage, e) from e
