"""Response jobs: queries, proactive messages and watch checks waiting for the model worker.

A job's events (created → deltas → done) go to `sink`, a callable that runs on the event loop: the asking client's
queue for a query, the broadcast hub for proactive and watch responses. The worker thread hands events over with
`loop.call_soon_threadsafe`, so nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from livesight.contract.api import BusyError, ModelUnavailableError
from livesight.ids import new_id
from livesight.types import ResponseCreated, ResponseDone, ResponseEvent, ResponseKind, ResponseStatus


def new_response_id() -> str:
    """Unique across processes, nodes and restarts (ids.py): a gateway's client never sees two answers share one."""
    return new_id("resp_")


@dataclass(eq=False)
class ResponseJob:
    camera: str
    kind: ResponseKind
    prompt: str
    sink: Callable[[ResponseEvent], None]  # called on the event loop
    response_id: str = field(default_factory=new_response_id)
    query_id: str | None = None
    watch_id: str | None = None
    scene: int | None = None
    pts: float | None = None
    submitted: float = field(default_factory=time.perf_counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: bool = False

    def created_event(self) -> ResponseCreated:
        return ResponseCreated(
            response_id=self.response_id,
            camera=self.camera,
            kind=self.kind,
            query_id=self.query_id,
            watch_id=self.watch_id,
            scene=self.scene,
            pts=self.pts,
        )

    def cancelled_event(self) -> ResponseDone:
        return ResponseDone(self.response_id, ResponseStatus.CANCELLED, text="")


class ResponseQueue:
    """Bounded FIFO of waiting jobs (overflow policy: refuse with BusyError, an OverflowError), cancellable by id."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._jobs: deque[ResponseJob] = deque()
        self._by_id: dict[str, ResponseJob] = {}  # waiting and running jobs
        self._ready = asyncio.Event()
        self.refused = 0
        self.closed: str | None = None  # why no job can be taken any more (the model worker is gone)

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def active(self) -> int:
        """Jobs waiting or running."""
        return len(self._by_id)

    def close(self, reason: str) -> None:
        """Refuse every job from now on (and cancel the waiting ones): nobody will run them."""
        self.closed = reason
        self.cancel_all()

    def put(self, job: ResponseJob) -> None:
        if self.closed is not None:
            self.refused += 1
            raise ModelUnavailableError(f"cannot answer now: {self.closed}")
        if len(self._jobs) >= self._maxsize:
            self.refused += 1
            raise BusyError(f"too many questions waiting ({self._maxsize}); try again shortly")
        self._jobs.append(job)
        self._by_id[job.response_id] = job
        self._ready.set()

    def pop(self) -> ResponseJob | None:
        if not self._jobs:
            self._ready.clear()
            return None
        return self._jobs.popleft()

    async def wait(self, max_wait_s: float) -> None:
        """Wait until a job is queued or `max_wait_s` seconds passed."""
        if self._jobs:
            return
        self._ready.clear()
        try:
            async with asyncio.timeout(max_wait_s):
                await self._ready.wait()
        except TimeoutError:
            pass

    def finished(self, job: ResponseJob) -> None:
        job.done = True
        self._by_id.pop(job.response_id, None)

    def cancel(self, response_id: str) -> bool:
        job = self._by_id.get(response_id)
        if job is None or job.done:
            return False
        job.cancel.set()
        if job in self._jobs:  # still waiting: finish it now
            self._jobs.remove(job)
            self.finished(job)
            job.sink(job.cancelled_event())
        return True

    def cancel_all(self) -> None:
        for rid in list(self._by_id):
            self.cancel(rid)
