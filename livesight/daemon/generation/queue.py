"""Generation work waiting for the model, scheduled beside the frame path (not inline in it).

Four kinds of job, in priority order (`JobKind`):

    QUERY      a person's question (ResponseJob)       bounded: `max_queries` waiting, then refused (BusyError)
    PROACTIVE  the message of a confirmed boundary      one waiting per camera: a newer boundary supersedes it; one
                                                        not started within `stale_after_s` is stale — both shed, counted
    WATCH      a standing question at a boundary        one waiting per watch: a newer boundary supersedes it (counted)
    CAPTION    the caption of a closed scene            one waiting per camera: a scene that closes meanwhile is merged
                                                        into it (one generation for both, counted; never lost silently)
    BACKFILL   the caption of a timeline entry that     not queued: asked of `backfill` (timeline/backfill.py, the
               has none, from its keyframes              store's backlog) when nothing else waits; one at a time

Every kind is bounded, so the whole queue is: max_queries + cameras x 2 + watches.

The model worker asks `next(frames_waiting=…)` before each turn. Questions come first (and, after one was answered,
waiting frames get the next turn, so a flood of questions slows video to every other turn instead of starving it).
Proactive messages, watch checks and captions run before waiting frames too — unless frames are waiting and
generation already took `share` of the worker's time over the last `window_s` seconds (GenerationBudget): then the
frames go first. When the box keeps up (no frame waits), nothing changes: every job runs as soon as the worker is
free. Questions are never held back by the budget, but their time counts in it.

A job's execution is the worker's business, not the queue's: the worker turns a job into `InWorker` work (a
blocking call in the model worker's thread: the local model) or `OnLoop` work (a coroutine on the event loop: a
remote model server, which does not hold the worker thread), books generation it runs in its units at the start
(`begin`) and settles it at the end (`settle`): work in flight counts in the budget from its first moment.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from livesight.daemon.generation.responses import ResponseJob
from livesight.protocols.contract.api import BusyError, ModelUnavailableError
from livesight.types import ResponseDone, ResponseEvent, ResponseKind

T = TypeVar("T")


class JobKind(enum.IntEnum):
    """Priority order: lower runs first."""

    QUERY = 0
    PROACTIVE = 1
    WATCH = 2
    CAPTION = 3
    BACKFILL = 4


_KIND = {
    ResponseKind.QUERY: JobKind.QUERY,
    ResponseKind.PROACTIVE: JobKind.PROACTIVE,
    ResponseKind.WATCH: JobKind.WATCH,
}


@dataclass(frozen=True, slots=True)
class InWorker(Generic[T]):
    """Blocking work for the model worker's one thread (a forward pass on the local model)."""

    fn: Callable[[], T]


@dataclass(frozen=True, slots=True)
class OnLoop(Generic[T]):
    """Work that awaits on the event loop (e.g. a request to a remote model server): the worker thread stays free."""

    start: Callable[[], Awaitable[T]]


Work = InWorker[T] | OnLoop[T]


@dataclass(eq=False)
class CaptionJob:
    """Caption the closed scenes of one camera that have none yet (the memory knows which)."""

    camera: str
    scenes: int = 1  # scenes waiting for this one generation (more than 1: merged)
    submitted: float = field(default_factory=time.perf_counter)
    held: bool = False  # the budget held it back at least once (deferred)
    kind: JobKind = JobKind.CAPTION


@dataclass(eq=False)
class BackfillJob:
    """Caption one timeline entry that has none, from its stored keyframes (timeline/backfill.py). Its `work` holds
    no camera's memory (a context of its own, or a request to the model server)."""

    camera: str
    entry_id: str
    work: Work[Any]
    kind: JobKind = JobKind.BACKFILL


class BackfillSource(Protocol):
    """Where backfill jobs come from (the daemon's timeline capture). Both calls on the event loop, non-blocking."""

    def next_job(self) -> BackfillJob | None: ...  # the job to run next, if any (not taken yet)

    def started(self, job: BackfillJob) -> None: ...  # the scheduler takes it


Job = ResponseJob | CaptionJob | BackfillJob


def kind_of(job: Job) -> JobKind:
    return job.kind if isinstance(job, CaptionJob | BackfillJob) else _KIND[job.kind]


@dataclass
class GenerationCounters:
    """What the scheduler did (exported in /metrics and /healthz; each field has one writer, the event loop)."""

    proactive_queued: int = 0
    proactive_started: int = 0
    proactive_shed_stale: int = 0  # not started within stale_after_s
    proactive_shed_superseded: int = 0  # a newer boundary of the same camera came first
    watch_superseded: int = 0
    captions_queued: int = 0  # caption jobs queued (a merged scene does not queue another)
    captions_merged: int = 0  # scenes folded into a caption job already waiting
    captions_started: int = 0
    captions_deferred: int = 0  # caption jobs the budget held back at least once (frames went first)
    backfill_started: int = 0  # timeline entries captioned later from their keyframes (jobs started)
    held_by_budget: int = 0  # turns where waiting generation gave way to frames because of the budget
    worker_seconds_generating: float = 0.0  # the model worker's time spent generating (questions included)
    worker_seconds_frames: float = 0.0  # …and on frame batches


class GenerationBudget:
    """The share of the model worker's time generation took over the last `window_s` seconds (wall clock). The worker
    has `units` threads of model work (`model.parallel`): its time is `units` × the window, so generation running on
    every unit at once is a share of 1, on one of two units 0.5.

    Work is booked when it starts (`begin`) and settled when it ends (`settle`): while it runs it counts as what it
    has taken so far or what a generation is expected to take (the running mean of the last ones), whichever is
    more. So a second unit, free a moment after the first started a long job, sees that job in the share and does
    not start another on the same unspent share (with `model.parallel` > 1, booking only at the end let two units
    start two long jobs at once and frames starve beyond the share). Before any generation was measured, a job
    is expected to take the whole share."""

    def __init__(
        self,
        share: float,
        window_s: float = 5.0,
        *,
        units: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        if units < 1:
            raise ValueError(f"units must be at least 1, got {units}")
        self.share = share
        self.window_s = window_s
        self.units = units
        self._clock = clock
        self._spans: deque[tuple[float, float]] = deque(maxlen=4096)  # (end, seconds) of generation work
        self._running: dict[int, float] = {}  # booking → its start (work in flight: at most `units` + async jobs)
        self._bookings = 0
        self.expected_s: float | None = None  # a generation's expected length: running mean of the last ones
        self._since = clock()

    def begin(self) -> int:
        """Generation starts now: booked in the share until `settle(booking)`."""
        self._bookings += 1
        self._running[self._bookings] = self._clock()
        return self._bookings

    def settle(self, booking: int) -> float:
        """The booked generation ended: its real length replaces the booking. Returns the seconds it took."""
        start = self._running.pop(booking, None)
        if start is None:
            return 0.0
        seconds = max(0.0, self._clock() - start)
        self.spent(seconds)
        return seconds

    def spent(self, seconds: float) -> None:
        """Generation that just ended took `seconds` of the worker."""
        self._spans.append((self._clock(), seconds))
        self.expected_s = seconds if self.expected_s is None else 0.7 * self.expected_s + 0.3 * seconds

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def used(self) -> float:
        """Share of the worker's time (all its units) over the last window spent generating or booked by generation
        in flight (0..1, or above when booked work is expected to take more)."""
        now = self._clock()
        start = now - self.window_s
        while self._spans and self._spans[0][0] <= start:
            self._spans.popleft()
        total = 0.0
        for end, secs in self._spans:
            total += min(secs, end - start)  # a span that began before the window counts its part inside
        expected = self.expected_s if self.expected_s is not None else self.share * self.window_s * self.units
        for began in self._running.values():
            elapsed = now - began
            total += min(elapsed, self.window_s) + max(0.0, expected - elapsed)  # taken so far + still expected
        return total / (max(min(self.window_s, now - self._since), 1e-3) * self.units)

    def allows(self) -> bool:
        return self.used() < self.share


class GenerationQueue:
    def __init__(
        self,
        max_queries: int,
        *,
        budget: GenerationBudget | None = None,
        stale_after_s: float = 3.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._maxsize = max_queries
        self.budget = budget or GenerationBudget(0.3, clock=clock)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._queries: deque[ResponseJob] = deque()
        self._proactive: dict[str, ResponseJob] = {}  # camera → its waiting proactive message
        self._watch: dict[str, ResponseJob] = {}  # watch id → its waiting check
        self._captions: dict[str, CaptionJob] = {}  # camera → its waiting caption job (oldest first: dict order)
        self._by_id: dict[str, ResponseJob] = {}  # response jobs waiting or running
        self._ready = asyncio.Event()
        self.counters = GenerationCounters()
        self.refused = 0
        self.closed: str | None = None  # why no job can be taken any more (the model worker is gone)
        self.on_put: Callable[[], None] | None = None  # called (on the loop) when a job is queued: wakes the worker
        self.backfill: BackfillSource | None = None  # the lowest priority: asked only when nothing else waits

    # ---- sizes ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Jobs waiting (every kind)."""
        return len(self._queries) + len(self._proactive) + len(self._watch) + len(self._captions)

    @property
    def active(self) -> int:
        """Response jobs (questions, proactive messages, watch checks) waiting or running."""
        return len(self._by_id)

    def waiting(self) -> dict[str, int]:
        return {
            "queries": len(self._queries),
            "proactive": len(self._proactive),
            "watch": len(self._watch),
            "captions": len(self._captions),
        }

    # ---- putting ---------------------------------------------------------------------------------------------

    def put(self, job: ResponseJob) -> None:
        """Queue a response job. Questions beyond `max_queries` are refused (BusyError); a proactive message or a
        watch check supersedes the one of the same camera / watch still waiting (shed, counted)."""
        if self.closed is not None:
            self.refused += 1
            raise ModelUnavailableError(f"cannot answer now: {self.closed}")
        kind = _KIND[job.kind]
        if kind is JobKind.QUERY:
            if len(self._queries) >= self._maxsize:
                self.refused += 1
                raise BusyError(f"too many questions waiting ({self._maxsize}); try again shortly")
            self._queries.append(job)
        elif kind is JobKind.PROACTIVE:
            old = self._proactive.pop(job.camera, None)
            if old is not None:
                self.counters.proactive_shed_superseded += 1
                self._forget(old)
            self._proactive[job.camera] = job
            self.counters.proactive_queued += 1
        else:
            key = job.watch_id or job.response_id
            old = self._watch.pop(key, None)
            if old is not None:
                self.counters.watch_superseded += 1
                self._forget(old)
            self._watch[key] = job
        self._by_id[job.response_id] = job
        self._ready.set()
        if self.on_put is not None:
            self.on_put()

    def add_caption(self, camera: str) -> None:
        """A scene of `camera` closed and wants a caption: merged into the camera's waiting caption job, if any."""
        if self.closed is not None:
            return
        job = self._captions.get(camera)
        if job is not None:
            job.scenes += 1
            self.counters.captions_merged += 1
            return
        self._captions[camera] = CaptionJob(camera, submitted=self._clock())
        self.counters.captions_queued += 1
        self._ready.set()
        if self.on_put is not None:
            self.on_put()

    # ---- taking ----------------------------------------------------------------------------------------------

    def next(
        self, *, frames_waiting: bool, after_answer: bool = False, busy: frozenset[str] = frozenset()
    ) -> Job | None:
        """The job the worker should run now, or None: frames (or nothing) go first. See the module's docstring.
        `busy`: cameras whose memory is in use by work running now (their jobs wait; others may go first)."""
        self._shed_stale()
        if self._queries and not (after_answer and frames_waiting):
            query = next((q for q in self._queries if q.camera not in busy), None)
            if query is not None:
                self._queries.remove(query)
                return query
        background = self._first_background(busy, backfill=self.closed is None)
        if background is None:
            return None
        if frames_waiting and not self.budget.allows():
            self.counters.held_by_budget += 1
            for c in self._captions.values():
                if not c.held:
                    c.held = True
                    self.counters.captions_deferred += 1
            return None
        return self._take(background)

    def pop(self) -> Job | None:
        """The most urgent job, whatever the budget (tests, the remote responder; the worker uses next()). Never a
        backfill job: the remote responder asks `backfill` itself, when its slots are free."""
        self._shed_stale()
        if self._queries:
            return self._queries.popleft()
        background = self._first_background()
        if background is None:
            self._ready.clear()
            return None
        return self._take(background)

    def _first_background(self, busy: frozenset[str] = frozenset(), *, backfill: bool = False) -> Job | None:
        proactive = [j for j in self._proactive.values() if j.camera not in busy]
        if proactive:
            return min(proactive, key=lambda j: j.submitted)
        for jobs in (self._watch.values(), self._captions.values()):
            job = next((j for j in jobs if j.camera not in busy), None)
            if job is not None:
                return job
        if backfill and self.backfill is not None and not len(self):  # nothing else waits (busy cameras' neither)
            return self.backfill.next_job()
        return None

    def _take(self, job: Job) -> Job:
        if isinstance(job, BackfillJob):
            assert self.backfill is not None
            self.backfill.started(job)
            self.counters.backfill_started += 1
        elif isinstance(job, CaptionJob):
            del self._captions[job.camera]
            self.counters.captions_started += 1
        elif job.kind is ResponseKind.PROACTIVE:
            del self._proactive[job.camera]
            self.counters.proactive_started += 1
        else:
            del self._watch[job.watch_id or job.response_id]
        return job

    def _shed_stale(self) -> None:
        now = self._clock()  # ResponseJob.submitted is a perf_counter time (the default clock)
        for cam, job in list(self._proactive.items()):
            if now - job.submitted > self.stale_after_s:
                del self._proactive[cam]
                self.counters.proactive_shed_stale += 1
                self._forget(job)

    def _forget(self, job: ResponseJob) -> None:
        """A response job that will never run (shed): nobody was told about it yet (no created event)."""
        job.done = True
        job.cancel.set()
        self._by_id.pop(job.response_id, None)

    async def wait(self, max_wait_s: float) -> None:
        """Wait until a job is queued or `max_wait_s` seconds passed."""
        if len(self):
            return
        self._ready.clear()
        try:
            async with asyncio.timeout(max_wait_s):
                await self._ready.wait()
        except TimeoutError:
            pass

    # ---- accounting ------------------------------------------------------------------------------------------

    def spent(self, kind: JobKind | None, seconds: float) -> None:
        """The worker reports a turn that ended: a job of `kind` (None: a frame batch) took `seconds`. (Generation
        the worker runs itself is booked at its start instead: `begin` / `settle`.)"""
        if kind is None:
            self.counters.worker_seconds_frames += seconds
            return
        self.counters.worker_seconds_generating += seconds
        self.budget.spent(seconds)

    def begin(self) -> int:
        """A generation job starts now: booked in the budget at once (before the next unit asks for work)."""
        return self.budget.begin()

    def settle(self, booking: int) -> None:
        """The generation job booked by `begin` ended: its real time replaces the booking."""
        self.counters.worker_seconds_generating += self.budget.settle(booking)

    def finished(self, job: ResponseJob) -> None:
        job.done = True
        self._by_id.pop(job.response_id, None)

    # ---- cancelling ------------------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Refuse every job from now on (and cancel the waiting ones): nobody will run them."""
        self.closed = reason
        self.cancel_all()

    async def events_of(self, job: ResponseJob, events: asyncio.Queue[ResponseEvent]) -> AsyncIterator[ResponseEvent]:
        """The events of a job put in this queue whose sink is `events.put_nowait`, up to its done event. Closed
        before the job ended (its reader went away: use contextlib.aclosing), the job is cancelled. Bounded by
        construction: a response has at most max_new_tokens deltas plus created/done."""
        try:
            while True:
                ev = await events.get()
                yield ev
                if isinstance(ev, ResponseDone):
                    return
        finally:
            if not job.done:
                self.cancel(job.response_id)

    def cancel(self, response_id: str) -> bool:
        job = self._by_id.get(response_id)
        if job is None or job.done:
            return False
        job.cancel.set()
        if self._unqueue(job):  # still waiting: finish it now
            self.finished(job)
            if job.kind is ResponseKind.QUERY:  # only questions announced themselves before they started
                job.sink(job.cancelled_event())
        return True

    def _unqueue(self, job: ResponseJob) -> bool:
        if job in self._queries:
            self._queries.remove(job)
            return True
        for table, key in ((self._proactive, job.camera), (self._watch, job.watch_id or job.response_id)):
            if table.get(key) is job:
                del table[key]
                return True
        return False

    def cancel_all(self) -> None:
        for rid in list(self._by_id):
            self.cancel(rid)
        self._captions.clear()

    def snapshot(self) -> dict[str, Any]:
        """Counters, waiting jobs and the budget, for /healthz and stats."""
        c = self.counters
        return {
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in vars(c).items()},
            "waiting": self.waiting(),
            "share_used": round(self.budget.used(), 3),
            "share_limit": self.budget.share,
        }
