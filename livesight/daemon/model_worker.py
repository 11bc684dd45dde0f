"""The model worker: the one place where the model runs, in one dedicated thread.

Each turn of its loop does one of, in this order of priority:
  1. a waiting response job (a client's question, a proactive message, a watch check),
  2. a batch of sampled frames, taken round-robin across cameras (one per camera per round, so a fast camera
     cannot starve a slow one): pixel pre-check → one batched vision-encoder call → DTD → memory → scene detector,
  3. memory maintenance (compression / context rebuild steps), when there is nothing else to do.
The event loop only moves small objects: every forward pass runs in the worker's executor thread.

A batch may hold several frames of one camera: DTD's pre-check plans them in order (dtd.py), so its decisions are
exactly those of one-by-one processing whatever the batch composition, and the batch still needs one encoder call.

Statistics cross threads as immutable snapshots: the memory belongs to the worker thread, which, after each piece of
work on a camera (frames, maintenance, an answer), publishes `lane.memory_stats` (a read-only mapping, replaced
whole). The event loop (/healthz, stats, /metrics, the demo printer) reads only those snapshots, never the memory.

Fault containment: every frame runs inside its camera lane's error boundary (lane_guard.py): a frame that raises
is counted (`frames_failed`), logged once per kind, and skipped. A frame that failed before DTD decided leaves DTD
as it was (the camera's later frames in the batch are judged without it, and encoded on the spot if that now takes
an encoding); one that failed in DTD or later re-synchronises the lane (its next frame is kept whole). N failures in
a row put the camera in state `error`, retried with backoff. A batched encoder call that fails is retried frame by
frame, so one bad frame does not fail the others. A failed answer fails that one response.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from livesight.config import Config, ReconnectConfig
from livesight.daemon.lane_guard import LaneGuard
from livesight.daemon.responses import ResponseJob
from livesight.daemon.service import LaneStats, Service
from livesight.errors import contain
from livesight.model.backend import Backend, EncodedFrame, GenerationResult, Tokens
from livesight.types import (
    DTDStep,
    Frame,
    ResponseDelta,
    ResponseDone,
    ResponseEvent,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)

log = logging.getLogger(__name__)

_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)


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

    def on_scene_change(self, change: SceneChange) -> None: ...

    def answer(
        self,
        question: str,
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool],
        on_text: Callable[[str], None] | None,
    ) -> GenerationResult: ...

    def maintenance_step(self) -> bool: ...  # True when it did some work

    def stats(self) -> dict[str, Any]: ...


class DetectorLike(Protocol):
    def update(self, step: DTDStep, frame: np.ndarray | None = None) -> SceneChange | None: ...


DEFAULT_RETRY = ReconnectConfig(initial_s=2.0, max_s=60.0)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The few values the worker needs from the configuration."""

    max_new_tokens: int = 64
    proactive_prompt: str = "Describe briefly what just changed in the scene."
    proactive_min_interval_s: float = 10.0
    max_failures: int = 3  # frames failing in a row before the camera goes to state error
    retry: ReconnectConfig = DEFAULT_RETRY
    stall_timeout_s: float = 30.0  # frames waiting and none processed for this long = stalled

    @classmethod
    def from_config(cls, cfg: Config) -> WorkerSettings:
        return cls(
            max_new_tokens=cfg.model.max_new_tokens,
            proactive_prompt=cfg.proactive.prompt,
            proactive_min_interval_s=cfg.proactive.min_interval_s,
            max_failures=cfg.worker.max_failures,
            retry=cfg.worker.retry,
            stall_timeout_s=cfg.worker.stall_timeout_s,
        )


@dataclass
class CameraLane:
    camera: str
    frames: FrameSource
    dtd: DTDLike
    memory: MemoryLike
    detector: DetectorLike
    proactive: bool
    last_proactive: float = -1e18
    step_ms: list[float] = field(default_factory=list)  # recent per-frame pipeline times (bounded)
    # the memory's statistics as of the worker's last work on this camera: written whole by the worker thread, read
    # by the event loop (the memory itself is the worker's alone)
    memory_stats: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    camera: str
    step: DTDStep | None  # None when the frame failed
    change: SceneChange | None
    pipeline_ms: float
    error: Exception | None = None
    stage: str = ""  # where it failed


class _Failed(Exception):
    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(stage)
        self.stage, self.error = stage, error


class ModelWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        backend: Backend,
        service: Service,
        lanes: Sequence[CameraLane],
        *,
        max_batch: int = 8,
        on_scene: Callable[[SceneChange], None] | None = None,
        on_response: Callable[[ResponseJob, GenerationResult | None, str], None] | None = None,
        run_jobs: bool = True,
    ) -> None:
        self.settings = settings
        # False: response jobs are run elsewhere (the remote responder, on the event loop); this worker runs frames
        self.run_jobs = run_jobs
        # False (openai): DTD decides from pixels, no encode() call, and the memory gets the pixels of kept frames
        self._encodes = getattr(getattr(backend, "info", None), "vision_encoder", True)
        self.backend = backend
        self.service = service
        self.lanes = {lane.camera: lane for lane in lanes}
        self.guards = {
            lane.camera: LaneGuard(
                lane.camera, max_failures=settings.max_failures, retry=settings.retry, on_error=service.set_lane_error
            )
            for lane in lanes
        }
        self.max_batch = max_batch
        # per-frame time of each stage, last STAGE_WINDOW frames (written by the worker thread; for benchmarks)
        self.stage_ms: dict[str, deque[float]] = {k: deque(maxlen=STAGE_WINDOW) for k in STAGES}
        self._on_scene = on_scene
        self._on_response = on_response
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livesight-model")
        self._rr: list[str] = list(self.lanes)  # round-robin order
        self.proactive_skipped = 0
        self.state = "starting"  # running | stopped | failed (health() adds stalled)
        self.last_error = ""
        self.loop_errors = 0  # failures outside any frame (maintenance), counted and survived
        self._last_progress = time.monotonic()  # last batch processed, or last time nothing was waiting
        self._last_frame_at: float | None = None
        for lane in lanes:  # before the worker thread exists: the first snapshot
            self._snapshot(lane)

    # ---- loop ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.state = "running"
        try:
            answered = False  # after an answer, waiting frames get the next turn: a flood of questions
            while True:  # slows video down to every other turn instead of starving it (scenes, memory)
                job = (
                    None if not self.run_jobs or (answered and self._frames_waiting()) else self.service.responses.pop()
                )
                answered = False
                if job is not None:
                    await self._run_job(loop, job)
                    answered = True
                    continue
                frames = self._take_frames()
                if frames:
                    outcomes = await loop.run_in_executor(self._executor, self._process_frames, frames)
                    self._publish(outcomes)
                    self._last_progress = self._last_frame_at = time.monotonic()
                    continue
                if not self._frames_waiting():
                    self._last_progress = time.monotonic()
                worked = await loop.run_in_executor(self._executor, self._maintenance)
                if not worked:
                    if self.run_jobs:
                        await self.service.responses.wait(0.02)
                    else:
                        await asyncio.sleep(0.02)
        except Exception as e:  # a bug outside every boundary: shown in /healthz (status failed), never silent
            self.state = "failed"
            self.last_error = f"{type(e).__name__}: {e}"
            self.service.responses.close(f"the model worker failed ({self.last_error})")
            raise
        finally:
            if self.state != "failed":
                self.state = "stopped"
            self.service.responses.cancel_all()
            # Waits for a forward pass in flight (generation sees its cancel flag and stops within a token).
            await asyncio.shield(loop.run_in_executor(None, self._executor.shutdown, True))

    def _frames_waiting(self) -> bool:
        return any(len(lane.frames) for lane in self.lanes.values() if self.guards[lane.camera].available())

    def _take_frames(self) -> list[Frame]:
        taken: list[Frame] = []
        progress = True
        while progress and len(taken) < self.max_batch:
            progress = False
            for cam in list(self._rr):
                if len(taken) >= self.max_batch:
                    break
                if not self.guards[cam].available():
                    continue  # in state error, waiting out its backoff (its queue drops the oldest, counted)
                try:
                    taken.append(self.lanes[cam].frames.get_nowait())
                    progress = True
                except asyncio.QueueEmpty:
                    continue
        if taken:  # rotate so the next batch starts with another camera
            self._rr.append(self._rr.pop(0))
        return taken

    # ---- in the worker thread ------------------------------------------------------------------------------

    def _process_frames(self, frames: list[Frame]) -> list[FrameOutcome]:
        t0 = time.perf_counter()
        prepared: list[np.ndarray | _Failed] = []
        need: list[bool] = []
        for f in frames:
            try:
                p = self.backend.prepare(f.rgb)
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
        idx = [i for i, n in enumerate(need) if n] if self._encodes else []
        encoded: list[EncodedFrame | _Failed | None] = [None] * len(frames)
        enc_ms = 0.0
        if idx:
            te = time.perf_counter()
            out = self._encode([prepared[i] for i in idx])  # type: ignore[misc]
            enc_ms = (time.perf_counter() - te) * 1000 / len(idx)
            for i, e in zip(idx, out, strict=True):
                encoded[i] = e
        stage = self.stage_ms
        outcomes = []
        for f, p, e in zip(frames, prepared, encoded, strict=True):
            ts = time.perf_counter()
            lane = self.lanes[f.camera]
            try:
                if isinstance(p, _Failed):
                    raise p
                if isinstance(e, _Failed):
                    # encoded because of a plan an earlier failed frame of this camera changed: maybe not needed now
                    if self._guarded("DTD", lane.dtd.needs_encoding, p, f.pts):
                        raise e
                    e = None
                assert not isinstance(p, _Failed) and not isinstance(e, _Failed)
                if e is None and self._encodes and self._guarded("DTD", lane.dtd.needs_encoding, p, f.pts):
                    # an earlier frame of this camera in the batch failed, so the plan changed: encode it now
                    e = self._guarded("vision encoder", self._encode_one, p)
                step = self._guarded("DTD", lane.dtd.decide, f.camera, f.pts, f.wall_time, p, e)
                tm = time.perf_counter()
                change = self._guarded("scene detector", lane.detector.update, step, p)  # p: the detector's thumbnail
                self._guarded("pictures", self.service.frames.put, step, p, change)  # latest frame, scene starts
                if change is not None:  # the ending scene is captioned before the new scene's first frame goes in
                    self._guarded("memory", lane.memory.on_scene_change, change)
                tokens = e.tokens if e is not None and not step.encoder_skipped else None
                if self._encodes:
                    self._guarded("memory", lane.memory.add_step, step, tokens)
                else:  # a remote memory sends the pixels of what DTD kept
                    self._guarded("memory", lane.memory.add_step, step, None, p)
            except _Failed as fail:
                try:
                    if fail.stage in ("prepare", "pre-check", "vision encoder"):
                        lane.dtd.drop_plan()  # DTD never saw it: the camera's next frames are judged without it
                    else:
                        lane.dtd.reset()  # DTD or later may be half done: the next frame is kept whole
                except Exception as e:  # the frame already failed (counted); its DTD clean-up failing is one more
                    contain("worker.dtd_reset", e, log, f"camera {f.camera}: resetting DTD after a failed frame")
                outcomes.append(FrameOutcome(f.camera, None, None, 0.0, fail.error, fail.stage))
                continue
            stage["prepare + pre-check"].append(prep_ms)
            stage["vision encoder"].append(enc_ms if e is not None else 0.0)
            stage["DTD decision"].append((tm - ts) * 1000)
            stage["scenes + memory + KV prefill"].append((time.perf_counter() - tm) * 1000)
            ms = prep_ms + (time.perf_counter() - ts) * 1000 + (enc_ms if e is not None else 0.0)
            outcomes.append(FrameOutcome(f.camera, step, change, ms))
        for cam in {f.camera for f in frames}:
            self._snapshot(self.lanes[cam])
        return outcomes

    def _snapshot(self, lane: CameraLane) -> None:
        """Publish the memory's statistics (in the worker thread, or before it starts): one reference replaced."""
        try:
            lane.memory_stats = MappingProxyType(dict(lane.memory.stats()))
        except Exception as e:  # statistics are informative: the previous snapshot stays
            contain("worker.memory_stats", e, log, f"camera {lane.camera}: memory statistics")

    @staticmethod
    def _guarded(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as e:
            raise _Failed(stage, e) from e

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

    def _maintenance(self) -> bool:
        worked = False
        for lane in self.lanes.values():
            try:
                if lane.memory.maintenance_step():
                    worked = True
                    self._snapshot(lane)
            except Exception as e:  # memory maintenance of one camera failed: counted, logged, survived
                self.loop_errors += 1
                self.last_error = f"maintenance {lane.camera}: {type(e).__name__}: {e}"
                contain("worker.maintenance", e, log, f"camera {lane.camera}: memory maintenance")
        return worked

    def _generate(self, job: ResponseJob, emit: Callable[[ResponseEvent], None] | None) -> GenerationResult:
        lane = self.lanes[job.camera]

        def on_text(s: str) -> None:
            if emit is not None and s:
                emit(ResponseDelta(job.response_id, s))

        try:
            return lane.memory.answer(
                job.prompt,
                max_new_tokens=self.settings.max_new_tokens,
                should_stop=job.cancel.is_set,
                on_text=on_text,
            )
        finally:
            self._snapshot(lane)  # the answer went into the context (kv_tokens)

    # ---- on the loop ---------------------------------------------------------------------------------------

    async def _run_job(self, loop: asyncio.AbstractEventLoop, job: ResponseJob) -> None:
        def emit(ev: ResponseEvent) -> None:  # from the worker thread
            loop.call_soon_threadsafe(job.sink, ev)

        streaming = job.kind is not ResponseKind.WATCH  # a watch is pushed only when the answer is yes
        result: GenerationResult | None = None
        error = ""
        try:
            result = await loop.run_in_executor(self._executor, self._generate, job, emit if streaming else None)
        except Exception as e:  # a failed generation fails one job (its done event says why), never the worker
            contain("worker.generation", e, log, f"response {job.response_id} on {job.camera}")
            error = f"{type(e).__name__}: {e}"
        finally:
            self.service.responses.finished(job)
        self.finish_job(job, result, error)

    def finish_job(
        self,
        job: ResponseJob,
        result: GenerationResult | None,
        error: str,
        *,
        code: str | None = None,
        repeat_yes: bool = True,
    ) -> None:
        """On the loop, after a job's generation ended (here, or in the remote responder): its done event, TTFT,
        the watch's state, the event log. `code`: the protocol error code of a failure. `repeat_yes` False: a watch
        is pushed only when its answer turns to yes (checks on new frames, not at a scene change)."""
        if result is None:
            done = ResponseDone(job.response_id, ResponseStatus.FAILED, text="", error=error or "cancelled", code=code)
        else:
            status = ResponseStatus.CANCELLED if result.stopped else ResponseStatus.COMPLETED
            done = ResponseDone(
                job.response_id,
                status,
                text=result.text,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                ttft_ms=round(result.ttft_ms, 2),
            )
            self.service.record_ttft(result.ttft_ms)
        delivered = True
        if job.kind is ResponseKind.WATCH:  # pushed only when the answer is yes
            delivered = result is not None and not result.stopped and bool(_YES.match(result.text))
            held = job.watch_id is not None and self.service.watch_holds.get(job.watch_id) is True
            if result is not None and not result.stopped:  # yes or no: the watch's state (Home Assistant)
                self.service.watch_answered(job.watch_id, delivered)
            if held and not repeat_yes:
                delivered = False  # still yes: said already
            if delivered:
                job.sink(job.created_event())
                job.sink(ResponseDelta(job.response_id, result.text))
        if delivered:
            job.sink(done)
            if self._on_response is not None:
                self._on_response(job, result, error)

    def _publish(self, outcomes: list[FrameOutcome]) -> None:
        for o in outcomes:
            step = o.step
            guard = self.guards[o.camera]
            if step is None:
                assert o.error is not None
                self.service.counters[o.camera].frames_failed += 1
                guard.failed(o.stage, o.error)
                continue
            guard.succeeded()
            k = self.service.counters[step.camera]
            k.frames_encoded += 0 if step.encoder_skipped else 1
            k.encoder_skipped += 1 if step.encoder_skipped else 0
            k.tokens_total += step.total
            k.tokens_kept += step.kept
            lane = self.lanes[step.camera]
            lane.step_ms.append(o.pipeline_ms)
            if len(lane.step_ms) > 200:
                del lane.step_ms[:100]
            if o.change is not None:
                self._scene_changed(lane, o.change)

    def _scene_changed(self, lane: CameraLane, change: SceneChange) -> None:
        self.service.hub.publish(change)
        if self._on_scene is not None:
            self._on_scene(change)
        hub = self.service.hub
        if lane.proactive:
            now = time.monotonic()
            if now - lane.last_proactive >= self.settings.proactive_min_interval_s:
                job = ResponseJob(
                    camera=lane.camera,
                    kind=ResponseKind.PROACTIVE,
                    prompt=self.settings.proactive_prompt,
                    sink=hub.publish,
                    scene=change.scene,
                    pts=change.pts,
                )
                if self._submit(job):
                    lane.last_proactive = now
                    hub.publish(job.created_event())
            else:
                self.proactive_skipped += 1
        for w in self.service.watches_for(lane.camera):
            job = ResponseJob(
                camera=lane.camera,
                kind=ResponseKind.WATCH,
                prompt=f"{w.text} Answer yes or no.",
                sink=hub.publish,
                watch_id=w.watch_id,
                scene=change.scene,
                pts=change.pts,
            )
            self._submit(job)

    def _submit(self, job: ResponseJob) -> bool:
        try:
            self.service.responses.put(job)
            return True
        except OverflowError:
            log.warning("response queue full: %s message for %s skipped", job.kind.value, job.camera)
            return False

    def health(self) -> dict[str, Any]:
        """The worker's part of /healthz: state (running | stalled | failed | …) and why."""
        now = time.monotonic()
        state = self.state
        waiting = self._frames_waiting()
        idle = now - self._last_progress
        reason = self.last_error if state == "failed" else ""
        if state == "running" and waiting and idle > self.settings.stall_timeout_s:
            state, reason = "stalled", f"frames waiting, none processed for {idle:.1f}s"
        return {
            "state": state,
            "reason": reason,
            "last_frame_age_s": None if self._last_frame_at is None else round(now - self._last_frame_at, 2),
            "frames_failed": sum(g.failed_total for g in self.guards.values()),
            "errors_outside_frames": self.loop_errors,
            "queues": {
                "responses": len(self.service.responses),
                **{cam: len(lane.frames) for cam, lane in self.lanes.items()},
            },
            "cameras_in_error": sorted(c for c, g in self.guards.items() if g.error is not None),
        }

    def lane_stats(self) -> dict[str, LaneStats]:
        """On the loop: the published snapshots (never the memory itself, which the worker thread is changing)."""
        out: dict[str, LaneStats] = {}
        for cam, lane in self.lanes.items():
            recent = sorted(lane.step_ms[-50:])
            median = round(recent[len(recent) // 2], 2) if recent else None
            out[cam] = LaneStats(median, lane.memory_stats)
        return out
