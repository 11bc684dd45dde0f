"""The model worker: the one place where the local model runs, in one dedicated thread.

Each turn of its loop does one of:
  1. a generation job the scheduler (generation/queue.py) picks: a person's question; or a proactive message, a
     watch check or a scene's caption — before waiting frames, unless frames wait and generation already took its
     share of the worker (`worker.generation_share`), when the frames go first; last, when nothing else waits, the
     caption of a timeline entry that has none, from its keyframes (timeline/backfill.py; it holds no camera);
  2. a batch of sampled frames, taken round-robin across cameras (one per camera per round, so a fast camera cannot
     starve a slow one), through frame_pipeline.py: pre-check → one batched vision-encoder call → DTD → scene
     detector → memory;
  3. memory maintenance (compression / context rebuild steps), when there is nothing else to do.
The event loop only moves small objects: every forward pass runs in the worker's executor threads. Up to
`model.parallel` units of work run at once, each in a thread of its own, never two for one camera (a camera's DTD,
detector and memory are used by one thread at a time): a batch of frames of some cameras beside a batch of the
others, or beside a question or a caption of a third. PyTorch releases the GIL in its operators, so on a CPU two
units use two cores where one unit with two intra-op threads gains little (small operators); each unit gets
`model.threads` intra-op threads. A job's work is `InWorker` (a worker thread) or `OnLoop` (a coroutine, e.g. a remote
model server: it runs as a task of its own, at most `max_async_jobs` at a time, and does not hold a thread);
`_work_for` is that seam.

Statistics cross threads as immutable snapshots (`CameraLane.memory_stats`, frame_pipeline.py): the worker thread
publishes them after each piece of work on a camera (frames, maintenance, an answer); the loop reads only those.

With a remote model server (model.backend openai) the worker runs frames only (`run_jobs=False`): the remote
responder (generation/remote_responder.py) takes the generation queue on the event loop, and ends each job through
`finish_job`, as this worker does: both end in generation/response_end.py.

Fault containment: every frame runs inside its camera lane's error boundary (lane_guard.py): a frame that raises is
counted (`frames_failed`), logged once per kind, and skipped; N failures in a row put the camera in state `error`,
retried with backoff. A failed answer fails that one response; a failed caption is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from livesight.config import Config, ReconnectConfig
from livesight.daemon.frame_pipeline import (
    STAGES,
    CameraLane,
    DetectorLike,
    DTDLike,
    FrameOutcome,
    FramePipeline,
    FrameSource,
    MemoryLike,
)
from livesight.daemon.generation.queue import BackfillJob, CaptionJob, InWorker, Job, OnLoop, Work
from livesight.daemon.generation.response_end import ResponseEnd
from livesight.daemon.generation.responses import TEXT_ONLY_TOKENS, ResponseJob
from livesight.daemon.lane_guard import LaneGuard
from livesight.daemon.service import LaneStats, Service
from livesight.errors import contain
from livesight.model.backend import Backend, GenerationResult
from livesight.streaming.queues import DropOldestQueue
from livesight.types import (
    Frame,
    ResponseDelta,
    ResponseEvent,
    ResponseKind,
    SceneChange,
)

__all__ = [
    "STAGES",
    "CameraLane",
    "DTDLike",
    "DetectorLike",
    "FrameSource",
    "MemoryLike",
    "ModelWorker",
    "WorkerSettings",
]

log = logging.getLogger(__name__)

TIMINGS = 256  # proactive messages whose timings are kept (benchmarks)
IDLE_S = 0.1  # with a thread free and nothing to start, look again at least this often

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
    max_async_jobs: int = 4  # OnLoop jobs (a remote model server) running at once
    parallel: int = 1  # units of model work (frame batches, generation jobs) running at once, one per camera

    @classmethod
    def from_config(cls, cfg: Config) -> WorkerSettings:
        return cls(
            max_new_tokens=cfg.model.max_new_tokens,
            proactive_prompt=cfg.proactive.prompt,
            proactive_min_interval_s=cfg.proactive.min_interval_s,
            max_failures=cfg.worker.max_failures,
            retry=cfg.worker.retry,
            stall_timeout_s=cfg.worker.stall_timeout_s,
            parallel=cfg.model.parallel,
        )


@dataclass(slots=True)
class _Run:
    """One response job's run: when its first token went out (from the worker thread)."""

    first_token_wall: float | None = None


@dataclass(frozen=True, slots=True)
class ProactiveTiming:
    """Where the time went between a cut and its proactive message's first token (wall clock, time.time())."""

    camera: str
    scene: int
    cut_pts: float
    cut_wall: float  # the scene's first frame was decoded
    detected_wall: float  # the evidence was confirmed (the cut tap's next frame; else when the frame was sampled)
    sampled_wall: float  # the frame the boundary was declared on was handed to the model's queue
    batch_wall: float  # the worker started the batch holding it
    declared_wall: float  # its processing ended: the boundary is known (the proactive job is queued)
    started_wall: float  # the proactive job started
    first_token_wall: float | None  # its first token was out

    def parts_ms(self) -> dict[str, float] | None:
        """cut → first token, in consecutive parts (ms); None without a first token."""
        if self.first_token_wall is None:
            return None
        marks = [
            ("detection", self.detected_wall),
            ("sampling", self.sampled_wall),
            ("frame queue", self.batch_wall),
            ("encode + DTD + scene + memory", self.declared_wall),
            ("proactive queue", self.started_wall),
            ("first token", self.first_token_wall),
        ]
        out, prev = {}, self.cut_wall
        for name, t in marks:
            out[name] = round((t - prev) * 1000, 1)
            prev = t
        out["total"] = round((self.first_token_wall - self.cut_wall) * 1000, 1)
        return out


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
        self.backend = backend
        self.service = service
        self.queue = service.responses
        self.lanes = {lane.camera: lane for lane in lanes}
        self.guards = {
            lane.camera: LaneGuard(
                lane.camera, max_failures=settings.max_failures, retry=settings.retry, on_error=service.set_lane_error
            )
            for lane in lanes
        }
        self.max_batch = max_batch
        self.pipeline = FramePipeline(backend, self.lanes, service.frames)
        self.stage_ms = self.pipeline.stage_ms  # per-frame time of each stage (benchmarks)
        self._on_scene = on_scene
        self.ending = ResponseEnd(service, on_response)  # how every response ends (generation/response_end.py)
        self.parallel = max(1, settings.parallel)
        self._executor = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="livesight-model")
        self._units: dict[asyncio.Task[None], frozenset[str]] = {}  # work running in the threads → its cameras
        # set when there may be work to start: a frame or a job queued, a frame to encode ahead (no polling delay)
        self._wake = asyncio.Event()
        self.queue.on_put = self._wake.set
        for lane in lanes:
            if isinstance(lane.frames, DropOldestQueue):
                lane.frames.on_put = self._wake.set
        self._rr: list[str] = list(self.lanes)  # round-robin order
        self._async: set[asyncio.Task[None]] = set()  # OnLoop jobs running
        self.proactive_skipped = 0  # boundaries within proactive.min_interval_s of the camera's last message
        self.captions_failed = 0
        # closed timeline entries (with their keyframes' frames), handed over on the loop: the daemon encodes them in
        # the picture thread and writes them to the timeline store
        self.on_entries: Callable[[tuple[Any, ...]], None] | None = None
        self.proactive_timings: deque[ProactiveTiming] = deque(maxlen=TIMINGS)
        # (camera, scene) → wall times of (cut, detected, sampled, batch started, declared)
        self._declared: dict[tuple[str, int], tuple[float, float, float, float, float]] = {}
        self.state = "starting"  # running | stopped | failed (health() adds stalled)
        self.last_error = ""
        self.loop_errors = 0  # failures outside any frame (maintenance), counted and survived
        self._last_progress = time.monotonic()  # last batch processed, or last time nothing was waiting
        self._last_frame_at: float | None = None
        for lane in lanes:  # before the worker thread exists: the first snapshot
            lane.snapshot()

    # ---- loop ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.state = "running"
        try:
            answered = False  # after an answer, waiting frames get the next turn (a question flood halves video)
            while True:
                self._wake.clear()  # (set again by anything queued from here on: nothing is missed)
                started = False
                while len(self._units) < self.parallel:  # fill the free threads
                    ahead = self.pipeline.early.next()
                    if ahead is not None:  # a likely scene start: encoded while the tap decides (no camera state)
                        self._unit(self._in_thread(loop, self.pipeline.early.encode, *ahead), frozenset(), "ahead")
                        started = True
                        continue
                    busy = self._busy()
                    job = None
                    if self.run_jobs and len(self._async) < self.settings.max_async_jobs:
                        job = self.queue.next(
                            frames_waiting=self._frames_waiting(busy), after_answer=answered, busy=busy
                        )
                    if job is not None:
                        answered = self._dispatch(loop, job)
                        started = True
                        continue
                    frames = self._take_frames(busy)
                    if not frames:
                        break  # (`answered` stays: frames that wait behind running work get the next turn)
                    answered = False
                    self._unit(self._frames(loop, frames), frozenset(f.camera for f, _ in frames), "frames")
                    started = True
                if self._units:
                    free = len(self._units) < self.parallel  # a free thread: also wake for new work
                    done = await self._wait(set(self._units), wake=free)
                    for t in done:
                        del self._units[t]
                        t.result()  # a bug outside every boundary fails the worker (below)
                    continue
                if started:
                    continue
                if not self._frames_waiting():
                    self._last_progress = time.monotonic()
                worked = await loop.run_in_executor(self._executor, self._maintenance)
                if worked:
                    continue
                if len(self._async) >= self.settings.max_async_jobs:  # jobs wait for a slot: wait for one to end
                    await asyncio.wait(self._async, timeout=0.02, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await self._wait(set(), wake=True)
        except Exception as e:  # a bug outside every boundary: shown in /healthz (status failed), never silent
            self.state = "failed"
            self.last_error = f"{type(e).__name__}: {e}"
            self.queue.close(f"the model worker failed ({self.last_error})")
            raise
        finally:
            if self.state != "failed":
                self.state = "stopped"
            self.queue.cancel_all()
            for t in [*self._async, *self._units]:
                t.cancel()
            if self._async or self._units:
                await asyncio.gather(*self._async, *self._units, return_exceptions=True)
            self._units.clear()
            # Waits for a forward pass in flight (generation sees its cancel flag and stops within a token).
            await asyncio.shield(loop.run_in_executor(None, self._executor.shutdown, True))

    async def _wait(self, tasks: set[asyncio.Task[None]], *, wake: bool) -> set[asyncio.Task[None]]:
        """Until one of `tasks` ends, or (`wake`) new work is queued, or IDLE_S passed (budgets and staleness move
        with time). Returns the tasks that ended."""
        if not wake:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return done
        waker = asyncio.get_running_loop().create_task(self._wake.wait(), name="model:wake")
        try:
            done, _ = await asyncio.wait({*tasks, waker}, timeout=IDLE_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
        return {t for t in done if t is not waker}  # type: ignore[misc]

    def _busy(self) -> frozenset[str]:
        """Cameras whose DTD, detector or memory a running unit of work is using."""
        return frozenset().union(*self._units.values()) if self._units else frozenset()

    def _unit(self, work: Any, cameras: frozenset[str], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"model:{name}")  # awaited in run()
        self._units[task] = cameras

    async def _in_thread(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
        await loop.run_in_executor(self._executor, fn, *args)

    def pre_encode(self, camera: str, pts: float, rgb: Any) -> None:
        """On the loop: a frame the camera's cut tap holds as a likely scene start (Camera.on_candidate), encoded in
        a free thread while the tap's next frame decides (early_encodes.py). Not when the camera's frames already
        wait (the worker is behind: the frame would wait anyway, and may be dropped before it is reached)."""
        if not self.pipeline.encodes:  # no vision encoder here (a remote model): nothing to encode ahead
            return
        lane = self.lanes.get(camera)
        if lane is None or len(lane.frames):
            self.pipeline.early.skipped += 1
            return
        self.pipeline.early.put(camera, pts, rgb)
        self._wake.set()

    async def _frames(self, loop: asyncio.AbstractEventLoop, frames: list[tuple[Frame, int]]) -> None:
        t0 = time.perf_counter()
        outcomes = await loop.run_in_executor(self._executor, self.pipeline.process, frames)
        self.queue.spent(None, time.perf_counter() - t0)
        self._publish(outcomes)
        self._last_progress = self._last_frame_at = time.monotonic()

    def _frames_waiting(self, busy: frozenset[str] = frozenset()) -> bool:
        return any(
            len(lane.frames)
            for lane in self.lanes.values()
            if lane.camera not in busy and self.guards[lane.camera].available()
        )

    def _take_frames(self, busy: frozenset[str] = frozenset()) -> list[tuple[Frame, int]]:
        """Up to max_batch frames, round-robin, each with the sampled frames of its camera missed just before it.
        Cameras in `busy` (in use by running work) wait for the next batch."""
        taken: list[tuple[Frame, int]] = []
        last = -1  # position in the round-robin order of the last camera served
        progress = True
        while progress and len(taken) < self.max_batch:
            progress = False
            for pos, cam in enumerate(list(self._rr)):
                if len(taken) >= self.max_batch:
                    break
                if cam in busy:
                    continue
                if not self.guards[cam].available():
                    continue  # in state error, waiting out its backoff (its queue drops the oldest, counted)
                lane = self.lanes[cam]
                try:
                    f = lane.frames.get_nowait()
                except asyncio.QueueEmpty:
                    continue
                missed = 0 if lane.last_index is None else max(0, f.index - lane.last_index - 1)
                lane.last_index = f.index
                taken.append((f, missed))
                last = pos
                progress = True
        if taken:  # the next batch starts with the camera after the last one served: every camera in turn
            k = (last + 1) % len(self._rr)
            self._rr = self._rr[k:] + self._rr[:k]
        return taken

    def _process_frames(self, frames: list[Frame]) -> list[FrameOutcome]:
        """One batch through the frame pipeline, in the calling thread (tests: the worker's batch path)."""
        batch = []
        for f in frames:
            lane = self.lanes[f.camera]
            missed = 0 if lane.last_index is None else max(0, f.index - lane.last_index - 1)
            lane.last_index = f.index
            batch.append((f, missed))
        return self.pipeline.process(batch)

    def _maintenance(self) -> bool:
        worked = False
        for lane in self.lanes.values():
            try:
                if lane.memory.maintenance_step():
                    worked = True
                    lane.snapshot()
            except Exception as e:  # memory maintenance of one camera failed: counted, logged, survived
                self.loop_errors += 1
                self.last_error = f"maintenance {lane.camera}: {type(e).__name__}: {e}"
                contain("worker.maintenance", e, log, f"camera {lane.camera}: memory maintenance")
        return worked

    # ---- generation jobs -----------------------------------------------------------------------------------

    def _work_for(self, job: Job, emit: Callable[[ResponseEvent], None] | None) -> Work[Any]:
        """How a job runs: the seam for backends whose generation is not a blocking call in this thread (a remote
        model server returns OnLoop work here)."""
        lane = self.lanes[job.camera]
        if isinstance(job, CaptionJob):
            return InWorker(lane.memory.caption_pending)
        return InWorker(partial(self._generate, job, emit))

    def _dispatch(self, loop: asyncio.AbstractEventLoop, job: Job) -> bool:
        """Start one job: InWorker work in a worker thread (holding its camera), OnLoop work as a task of its own.
        True when it was a person's question."""
        cams = frozenset([job.camera])
        if isinstance(job, BackfillJob):  # its own context (or a request): it holds no camera
            if isinstance(job.work, OnLoop):
                self._spawn(self._backfill(job), f"backfill:{job.entry_id}")
            else:
                self._unit(
                    self._timed(self.queue.begin(), self._backfill(job)), frozenset(), f"backfill:{job.entry_id}"
                )
            return False
        if isinstance(job, CaptionJob):
            work = self._work_for(job, None)
            if isinstance(work, OnLoop):
                self._spawn(self._caption(job, work), f"caption:{job.camera}")
            else:
                self._unit(self._timed(self.queue.begin(), self._caption(job, work)), cams, f"caption:{job.camera}")
            return False
        if job.text_only:  # the prompt alone: the camera's memory is not used (its frames may go on beside it)
            cams = frozenset()
        run = _Run()
        emit = self._emitter(loop, job, run)
        work = self._work_for(job, emit if job.kind is not ResponseKind.WATCH else None)
        if isinstance(work, OnLoop):
            self._spawn(self._respond(job, work, run), f"response:{job.response_id}")
        else:
            booking = self.queue.begin()  # booked now: the next unit that asks sees it in the budget
            self._unit(self._timed(booking, self._respond(job, work, run)), cams, f"response:{job.response_id}")
        return job.kind is ResponseKind.QUERY

    async def _timed(self, booking: int, run: Any) -> None:
        """Run a generation booked at its dispatch (`queue.begin`); settle the booking when it ends, however."""
        try:
            await run
        finally:
            self.queue.settle(booking)

    def _spawn(self, run: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(run, name=name)  # tracked; cancelled and awaited in run()
        self._async.add(task)
        task.add_done_callback(self._async.discard)

    async def _execute(self, work: Work[Any]) -> Any:
        if isinstance(work, InWorker):
            return await asyncio.get_running_loop().run_in_executor(self._executor, work.fn)
        return await work.start()

    async def _caption(self, job: CaptionJob, work: Work[Any]) -> None:
        try:
            await self._execute(work)
        except Exception as e:  # a failed caption fails that caption (its scenes keep waiting), never the worker
            self.captions_failed += 1
            contain("worker.caption", e, log, f"camera {job.camera}: caption")
        finally:
            self.lanes[job.camera].snapshot()

    async def _backfill(self, job: BackfillJob) -> None:
        try:
            await self._execute(job.work)  # (timeline/backfill.py counts and retries its own failures)
        except Exception as e:  # a bug around it fails this one caption, never the worker
            contain("worker.backfill", e, log, f"timeline entry {job.entry_id}: caption backfill")

    @staticmethod
    def _emitter(loop: asyncio.AbstractEventLoop, job: ResponseJob, run: _Run) -> Callable[[ResponseEvent], None]:
        loop_thread = threading.get_ident()  # built on the loop

        def emit(ev: ResponseEvent) -> None:  # from the worker thread, or on the loop for OnLoop work
            if run.first_token_wall is None:
                run.first_token_wall = time.time()
            if threading.get_ident() == loop_thread:
                job.sink(ev)  # in order with the done event that follows
            else:
                loop.call_soon_threadsafe(job.sink, ev)

        return emit

    def _generate(self, job: ResponseJob, emit: Callable[[ResponseEvent], None] | None) -> GenerationResult:
        lane = self.lanes[job.camera]

        def on_text(s: str) -> None:
            if emit is not None and s:
                emit(ResponseDelta(job.response_id, s))

        if job.text_only:  # a fresh context holding only the system prompt (generation/responses.py)
            return self.backend.new_context().generate(
                job.prompt,
                max_new_tokens=max(self.settings.max_new_tokens, TEXT_ONLY_TOKENS),
                should_stop=job.cancel.is_set,
                on_text=on_text,
            )
        recalled = job.recall.segment() if job.recall is not None else None
        extra = {"recalled": recalled} if recalled is not None else {}  # past moments (timeline/recall.py)
        try:
            return lane.memory.answer(
                job.prompt,
                max_new_tokens=self.settings.max_new_tokens,
                should_stop=job.cancel.is_set,
                on_text=on_text,
                **extra,
            )
        finally:
            lane.snapshot()  # the answer went into the context (kv_tokens)

    def start_job(self, job: ResponseJob) -> None:
        """On the loop, as a job's generation starts (here, or in the remote responder): a proactive message is
        announced now (one shed before it started was never announced) and restarts its camera's interval."""
        if job.kind is ResponseKind.PROACTIVE:
            self.lanes[job.camera].last_proactive = time.monotonic()
            job.sink(job.created_event())

    async def _respond(self, job: ResponseJob, work: Work[Any], run: _Run) -> None:
        started = time.time()
        self.start_job(job)
        result: GenerationResult | None = None
        error = ""
        try:
            result = await self._execute(work)
        except Exception as e:  # a failed generation fails one job (its done event says why), never the worker
            contain("worker.generation", e, log, f"response {job.response_id} on {job.camera}")
            error = f"{type(e).__name__}: {e}"
        finally:
            self.queue.finished(job)
        if job.kind is ResponseKind.PROACTIVE:
            self._timing(job, started, run.first_token_wall)
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
        """On the loop, after a job's generation ended (here, or in the remote responder): generation/response_end.py
        (done event with citations, TTFT, the watch's state, the event log)."""
        self.ending.finish(job, result, error, code=code, repeat_yes=repeat_yes)

    def _timing(self, job: ResponseJob, started: float, first_token: float | None) -> None:
        walls = self._declared.pop((job.camera, job.scene or 0), None)
        if walls is not None:
            self.proactive_timings.append(
                ProactiveTiming(job.camera, job.scene or 0, job.pts or 0.0, *walls, started, first_token)
            )

    # ---- publishing frames (on the loop) -------------------------------------------------------------------

    def _publish(self, outcomes: list[FrameOutcome]) -> None:
        for o in outcomes:
            if o.closed and self.on_entries is not None:
                self.on_entries(o.closed)
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
                self._scene_changed(lane, o.change, o)
            if o.caption:
                self.queue.add_caption(lane.camera)

    def _scene_changed(self, lane: CameraLane, change: SceneChange, outcome: FrameOutcome) -> None:
        self.service.hub.publish(change)
        if self._on_scene is not None:
            self._on_scene(change)
        hub = self.service.hub
        if lane.proactive:
            if time.monotonic() - lane.last_proactive >= self.settings.proactive_min_interval_s:
                job = ResponseJob(
                    camera=lane.camera,
                    kind=ResponseKind.PROACTIVE,
                    prompt=self.settings.proactive_prompt,
                    sink=hub.publish,
                    scene=change.scene,
                    pts=change.pts,
                )
                if len(self._declared) > TIMINGS:  # bounded (entries of shed messages are never popped)
                    self._declared.clear()
                o = outcome
                detected = change.detected_wall if change.detected_wall is not None else o.frame_wall
                self._declared[(lane.camera, change.scene)] = (
                    change.wall_time,
                    detected,
                    o.frame_wall,
                    o.start_wall,
                    o.done_wall,
                )
                self._submit(job)  # a waiting one of this camera is superseded (counted); announced when it starts
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
            self.queue.put(job)
            return True
        except OverflowError:
            log.warning("response queue full: %s message for %s skipped", job.kind.value, job.camera)
            return False

    # ---- health --------------------------------------------------------------------------------------------

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
                "responses": len(self.queue),
                **{cam: len(lane.frames) for cam, lane in self.lanes.items()},
            },
            "cameras_in_error": sorted(c for c, g in self.guards.items() if g.error is not None),
            "generation": {
                **self.queue.snapshot(),
                "proactive_skipped": self.proactive_skipped,
                "captions_failed": self.captions_failed,
            },
        }

    def lane_stats(self) -> dict[str, LaneStats]:
        """On the loop: the published snapshots (never the memory itself, which the worker thread is changing)."""
        out: dict[str, LaneStats] = {}
        for cam, lane in self.lanes.items():
            recent = sorted(lane.step_ms[-50:])
            median = round(recent[len(recent) // 2], 2) if recent else None
            out[cam] = LaneStats(median, lane.memory_stats)
        return out
