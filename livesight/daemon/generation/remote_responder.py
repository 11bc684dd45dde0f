"""Response jobs and scene captions against a remote model server (`model.backend: openai`), on the event loop.

With a remote server, generation is an HTTP request, not a forward pass: it must not hold the model worker's thread
(frames keep flowing while the server thinks) nor block the loop. So, with this backend, the model worker runs frames
only (`ModelWorker(run_jobs=False)`) and this responder takes the response queue instead:

  - at most `model.concurrent_requests` requests in flight, each a named task of the responder's TaskGroup;
  - priority: waiting response jobs (questions, proactive messages, watch checks, in queue order), then captions of
    closed scenes, then (one at a time) timeline entries without a caption, from their keyframes (backfill); a
    question that finds every slot taken by background work (captions, proactive, watches, backfill) cancels the
    newest of those (a caption goes back to waiting), so a question is never queued behind them;
  - watches are also checked on newly kept frames (`model.watch_interval_s`), and pushed when the answer turns to yes;
  - while the server fails, background work waits out the client's backoff (a proactive message or watch check due
    then ends at once as failed with the error code); questions are always tried; the client probes GET /models so
    /healthz recovers by itself.

The queue is the model worker's generation queue (queue.py: bounded, proactive messages superseded and
shed when stale, counted); its priority order is kept, its worker-time budget does not apply (a request holds no
thread here). Every job starts through `ModelWorker.start_job` (a proactive message is announced as it starts) and
ends through `finish` — daemon/generation/response_end.py's `ResponseEnd.finish`, where local generation ends too (the
same done event with its citations, TTFT, watch state and event log). A question's recalled past moments (`job.recall`)
go into its request after the live content, before the question. Re-seating on another scheduler: a job's whole
remote execution is `await run_job(job)`, a caption's `await run_caption(memory, closed_scene)` (coroutines that
never raise but CancelledError); what this loop adds around them is the slot bound, question preemption, watch
checks on new frames and the health probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from livesight.daemon.generation.queue import BackfillJob, CaptionJob, OnLoop
from livesight.daemon.generation.responses import TEXT_ONLY_TOKENS, ResponseJob
from livesight.daemon.service import Service
from livesight.errors import contain
from livesight.memory.remote_memory import ClosedScene, RemoteMemory, RemoteRequest
from livesight.model.backend import GenerationResult
from livesight.model.remote.client import BACKOFF_MAX_S, REJECTED, RemoteError, RemoteModel
from livesight.types import ResponseDelta, ResponseKind

log = logging.getLogger(__name__)

CAPTION_TOKENS = 32
CAPTION_ATTEMPTS = 4  # a scene's caption is given up after this many failed requests
POLL_S = 0.05  # the responder's wake-up period when idle (it also wakes at once for queued jobs)

KIND_NAMES = {ResponseKind.QUERY: "question", ResponseKind.PROACTIVE: "proactive", ResponseKind.WATCH: "watch"}

Finish = Callable[..., None]  # ResponseEnd.finish(job, result, error, *, code=None, repeat_yes=True)
Start = Callable[[ResponseJob], None]  # ModelWorker.start_job(job)


@dataclass(eq=False)
class _Running:
    task: asyncio.Task[None]
    background: bool
    order: int
    job: ResponseJob | None = None
    caption: ClosedScene | None = None
    backfill: bool = False


class RemoteResponder:
    def __init__(
        self,
        service: Service,
        model: RemoteModel,
        memories: dict[str, RemoteMemory],
        *,
        finish: Finish,
        start: Start | None = None,
        max_new_tokens: int,
        concurrent: int,
        watch_interval_s: float,
    ) -> None:
        self.service = service
        self.model = model
        self.memories = memories
        self._finish = finish
        self._start = start
        self.max_new_tokens = max_new_tokens
        self.concurrent = concurrent
        self.watch_interval_s = watch_interval_s
        self._running: set[_Running] = set()
        self._held: ResponseJob | None = None  # a background job popped while every slot was busy
        self._watch_seen: dict[str, int] = {}  # camera → newest image seq its watches were checked on
        self._watch_at: dict[str, float] = {}  # camera → monotonic time of its last frame-triggered check
        self._watch_jobs: dict[str, int] = {}  # camera → watch jobs submitted and not finished
        self._probe_at = 0.0
        self._order = 0
        self.preempted = 0

    # ---- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    self._sweep_cancelled()
                    self._start_jobs(tg)
                    self._start_captions(tg)
                    self._start_backfill(tg)
                    self._check_watches()
                    self._maybe_probe(tg)
                    await self.service.responses.wait(POLL_S)
                    if len(self.service.responses) and self._free() == 0:
                        await asyncio.sleep(POLL_S)  # jobs waiting for a slot: re-check soon, never spin
        finally:
            await self.model.close()

    def _free(self) -> int:
        return self.concurrent - len(self._running)

    def _spawn(self, tg: asyncio.TaskGroup, coro: Coroutine[Any, Any, None], name: str, **kw: Any) -> _Running:
        self._order += 1
        entry = _Running(tg.create_task(coro, name=name), order=self._order, **kw)
        self._running.add(entry)
        entry.task.add_done_callback(lambda _t: self._running.discard(entry))
        return entry

    def _start_jobs(self, tg: asyncio.TaskGroup) -> None:
        while True:
            job = self._held or self.service.responses.pop()
            self._held = None
            if job is None:
                return
            if isinstance(job, CaptionJob):  # a remote memory's captions are asked for below, never queued
                continue
            if job.cancel.is_set():  # cancelled while held back
                self.service.responses.finished(job)
                job.sink(job.cancelled_event())
                continue
            background = job.kind is not ResponseKind.QUERY
            if self._free() <= 0 and (background or not self._preempt()):
                self._held = job  # waits for a slot (the queue behind it stays bounded)
                return
            self._spawn(
                tg,
                self.run_job(job),
                f"remote-{KIND_NAMES[job.kind]}:{job.response_id}",
                background=background,
                job=job,
            )

    def _preempt(self) -> bool:
        """Cancel the newest background request so a question gets its slot. False when all slots hold questions."""
        victims = [r for r in self._running if r.background and not r.task.done()]
        if not victims:
            return False
        victim = max(victims, key=lambda r: r.order)
        victim.task.cancel()
        self._running.discard(victim)  # its slot is the question's now (the task ends within a moment)
        self.preempted += 1
        return True

    def _sweep_cancelled(self) -> None:
        """A client cancelled a running answer before its first chunk: end the request now, not at the next chunk."""
        for r in list(self._running):
            if r.job is not None and r.job.cancel.is_set() and not r.task.done():
                r.task.cancel()

    # ---- response jobs -------------------------------------------------------------------------------------

    async def run_job(self, job: ResponseJob) -> None:
        """One response job against the server: events to the job's sink, then `finish` (exactly once)."""
        kind = KIND_NAMES[job.kind]
        streaming = job.kind is not ResponseKind.WATCH  # a watch is pushed only when the answer is yes
        parts: list[str] = []

        def on_text(s: str) -> None:
            parts.append(s)
            if streaming:
                job.sink(ResponseDelta(job.response_id, s))

        started = time.perf_counter()
        result: GenerationResult | None = None
        error, code = "", None
        try:
            if self._start is not None:
                self._start(job)
            if job.text_only:  # a summary of stored captions: the prompt alone, no image (responses.py)
                req = RemoteRequest([{"role": "user", "content": job.prompt}], 0, 0, 0)
            else:
                recalled = job.recall.segment() if job.recall is not None else None  # past moments (timeline/recall.py)
                req = self.memories[job.camera].question_request(job.prompt, recalled=recalled)
            r = await self.model.generate(
                req.messages,
                kind=kind,
                max_tokens=max(self.max_new_tokens, TEXT_ONLY_TOKENS) if job.text_only else self.max_new_tokens,
                images=req.images,
                image_bytes=req.image_bytes,
                image_tokens=req.image_tokens,
                new_image_tokens=req.new_image_tokens,
                on_text=on_text,
                should_stop=job.cancel.is_set,
            )
            waited_ms = (started - job.submitted) * 1000
            result = GenerationResult(r.text, r.prompt_tokens, r.completion_tokens, waited_ms + r.ttft_ms, r.stopped)
        except RemoteError as e:
            error, code = str(e), e.code
            if job.kind is ResponseKind.QUERY:
                log.info("question %s on %s failed: %s", job.response_id, job.camera, e)
        except Exception as e:  # a bug here fails this one job, never the responder (its TaskGroup)
            contain("remote.response", e, log, f"response {job.response_id} on {job.camera}")
            error, code = f"{type(e).__name__}: {e}", "internal_error"
        except asyncio.CancelledError:  # the client cancelled, a question preempted it, or shutdown
            result = GenerationResult("".join(parts), 0, len(parts), (time.perf_counter() - started) * 1000, True)
            self._end(job, result, "", None)
            raise
        self._end(job, result, error, code)

    def _end(self, job: ResponseJob, result: GenerationResult | None, error: str, code: str | None) -> None:
        self.service.responses.finished(job)
        if job.kind is ResponseKind.WATCH:
            n = self._watch_jobs.get(job.camera, 0) - 1
            self._watch_jobs[job.camera] = max(0, n)
        try:
            self._finish(job, result, error, code=code, repeat_yes=job.scene is not None)
        except Exception as e:  # publishing one job's end must never end the responder
            contain("remote.finish", e, log, f"response {job.response_id}: finishing")

    # ---- captions ------------------------------------------------------------------------------------------

    def _start_captions(self, tg: asyncio.TaskGroup) -> None:
        if self._held is not None or len(self.service.responses) or self.model.wait_s("caption") > 0:
            return
        busy = {r.caption for r in self._running if r.caption is not None}
        now = time.monotonic()
        for cam, mem in self.memories.items():
            if self._free() <= 0:
                return
            closed = mem.next_caption(now)
            if closed is None or closed in busy:
                continue
            self._spawn(
                tg,
                self.run_caption(mem, closed),
                f"remote-caption:{cam}:{closed.scene}",
                background=True,
                caption=closed,
            )

    async def run_caption(self, mem: RemoteMemory, closed: ClosedScene) -> None:
        """One closed scene's caption request; on failure the scene stays waiting (retried later) or is given up."""
        try:
            req = mem.caption_request(closed)
            r = await self.model.generate(
                req.messages,
                kind="caption",
                max_tokens=CAPTION_TOKENS,
                images=req.images,
                image_bytes=req.image_bytes,
                image_tokens=req.image_tokens,
                new_image_tokens=req.new_image_tokens,
            )
        except Exception as e:  # RemoteError, or a bug: this caption fails (retried), never the responder
            if not isinstance(e, RemoteError):
                contain("remote.caption", e, log, f"camera {mem.camera}: scene {closed.scene} caption")
            final = (isinstance(e, RemoteError) and e.code == REJECTED) or closed.attempts + 1 >= CAPTION_ATTEMPTS
            retry = None if final else time.monotonic() + max(self.model.wait_s("caption"), 1.0)
            mem.caption_failed(closed, retry_at=retry)
            if final:
                log.warning("camera %s: scene %d caption given up: %s", mem.camera, closed.scene, e)
            return
        mem.caption_done(closed, r.text)

    def _start_backfill(self, tg: asyncio.TaskGroup) -> None:
        """A timeline entry without a caption (timeline/backfill.py), one at a time, when nothing else waits: no job,
        no closed scene's caption, a free slot, the server not failing."""
        source = self.service.responses.backfill
        if source is None or self._held is not None or len(self.service.responses) or self._free() <= 0:
            return
        if self.model.wait_s("caption") > 0 or any(r.backfill for r in self._running):
            return
        if any(mem.captions_pending for mem in self.memories.values()):
            return
        job = source.next_job()
        if job is None or not isinstance(job.work, OnLoop):
            return
        source.started(job)
        self._spawn(tg, self._backfill(job), f"remote-backfill:{job.entry_id}", background=True, backfill=True)

    async def _backfill(self, job: BackfillJob) -> None:
        assert isinstance(job.work, OnLoop)
        try:
            await job.work.start()  # (timeline/backfill.py counts and retries its own failures)
        except Exception as e:  # a bug around it fails this one caption, never the responder
            contain("remote.backfill", e, log, f"timeline entry {job.entry_id}: caption backfill")

    # ---- watches on new frames -----------------------------------------------------------------------------

    def _check_watches(self) -> None:
        if self.watch_interval_s <= 0:
            return
        now = time.monotonic()
        for cam, mem in self.memories.items():
            seq = mem.latest_seq
            if seq <= self._watch_seen.get(cam, 0) or self._watch_jobs.get(cam, 0):
                continue
            if now - self._watch_at.get(cam, -1e18) < self.watch_interval_s:
                continue
            watches = self.service.watches_for(cam)
            if not watches:
                self._watch_seen[cam] = seq
                continue
            self._watch_seen[cam], self._watch_at[cam] = seq, now
            for w in watches:
                job = ResponseJob(
                    camera=cam,
                    kind=ResponseKind.WATCH,
                    prompt=f"{w.text} Answer yes or no.",
                    sink=self.service.hub.publish,
                    watch_id=w.watch_id,
                )  # scene None: pushed only when the answer turns to yes
                try:
                    self.service.responses.put(job)
                except OverflowError:
                    log.debug("response queue full: watch check on %s skipped", cam)
                    break
                self._watch_jobs[cam] = self._watch_jobs.get(cam, 0) + 1

    # ---- recovering by itself ------------------------------------------------------------------------------

    def _maybe_probe(self, tg: asyncio.TaskGroup) -> None:
        if not self.model.probe_useful or self._running or self.model.wait_s("caption") > 0:
            return
        now = time.monotonic()
        if now - self._probe_at < BACKOFF_MAX_S / 2:
            return
        self._probe_at = now
        self._spawn(tg, self._probe(), "remote-probe", background=True)

    async def _probe(self) -> None:
        await self.model.probe()


def remote_model_of(backend: Any) -> RemoteModel | None:
    """The backend's remote server link when it is a remote backend (model.backend openai), else None."""
    remote = getattr(backend, "remote", None)
    return remote if isinstance(remote, RemoteModel) else None
