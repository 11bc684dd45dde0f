"""Captions for timeline entries that have none (shed under load, a model error, the model server away), made later
from their stored keyframes when generation has spare share.

The backlog is the store's (`uncaptioned()`: closed entries whose caption is pending, newest first), so it survives
a restart. `Backfill` holds a small list of candidates read from the store in a thread (`refresh()`, every
REFRESH_S by `run()`, at once when the list runs out) and hands them out one at a time, newest first, to the
scheduler on the event loop (`peek()` / `take()`: non-blocking). The generation queue offers a backfill job only when
nothing else waits and the worker's generation budget allows (daemon/generation/queue.py: the lowest priority);
with a remote model server, the remote responder starts one when its slots and the server are free.

One caption: `caption(entry, describe)` blocks (the model worker's thread: an in-process model puts the keyframes
through the vision tower into a context of their own and answers the prompt), `caption_async(entry, describe)`
awaits (a remote server gets the keyframes as images). An entry that closed less than `grace_s` ago is left to its
live caption (the memory captions a scene at its end; the store fills the scene's entries). A failure is counted,
told to the store (`caption_failed`) and retried after a backoff (`retry_s`, doubling up to `retry_max_s`); an entry
whose keyframes are gone is retried as rarely. Bounded: CANDIDATES entries held, RETRIES backoffs remembered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from livesight.errors import contain
from livesight.imaging import decode_jpeg
from livesight.types import TimelineEntry

log = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe what happened in this scene in one short sentence."
CAPTION_TOKENS = 32
CAPTION_CHARS = 240
CANDIDATES = 32  # entries read from the store at once (beyond those waiting out a backoff)
RETRIES = 4096  # backoffs remembered (the oldest forgotten: retried sooner)
REFRESH_S = 2.0
GRACE_S = 30.0  # a just-closed entry waits this long for its live caption
RETRY_S = 30.0
RETRY_MAX_S = 1800.0

# (images oldest first, their stream times, prompt) → caption text. Blocking (the model worker's thread).
Describe = Callable[[list[np.ndarray], list[float], str], str]
# (JPEGs oldest first, a label per image, prompt, intro) → caption text. On the event loop.
DescribeAsync = Callable[[list[bytes], list[str], str, str], Awaitable[str]]


class CaptionStore(Protocol):
    """What the backfill needs of the timeline store (timeline/store.py). Blocking: called in threads."""

    def uncaptioned(self, *, limit: int) -> list[TimelineEntry]: ...

    def backlog(self) -> int: ...

    def keyframe_bytes(self, entry_id: str, index: int) -> bytes | None: ...

    def set_caption(self, entry_id: str, caption: str) -> None: ...

    def caption_failed(self, entry_id: str, reason: str) -> None: ...


class NoKeyframesError(Exception):
    """An entry none of whose keyframes can be read (never written, or deleted by retention)."""


def clock_label(wall_time: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_time))


def intro(entry: TimelineEntry) -> str:
    end = entry.end_wall_time if entry.end_wall_time is not None else entry.wall_time
    return (
        f"Camera {entry.camera}, scene {entry.scene}"
        + (f" (part {entry.chunk + 1})" if entry.chunk else "")
        + f", {clock_label(entry.wall_time)} to {clock_label(end)}. Its keyframes, oldest first:"
    )


class Backfill:
    def __init__(
        self,
        store: CaptionStore,
        *,
        grace_s: float = GRACE_S,
        retry_s: float = RETRY_S,
        retry_max_s: float = RETRY_MAX_S,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.grace_s = grace_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()  # counters and lists: the loop, the refresh thread, the model worker's thread
        self._candidates: list[TimelineEntry] = []  # newest first
        self._in_flight: set[str] = set()
        self._retry: OrderedDict[str, tuple[float, int]] = OrderedDict()  # entry id → (retry at, failures)
        self._wake: asyncio.Event | None = None
        self.backlog = 0  # entries without a caption, as of the last refresh (minus those captioned since)
        self.backfilled = 0
        self.failed = 0
        self.refreshes = 0

    # ---- the candidates (refresh in a thread; peek/take on the loop) ----------------------------------------

    def refresh(self) -> None:
        """Blocking: read the newest uncaptioned entries and the backlog from the store."""
        with self._lock:
            waiting = len(self._retry)
        entries = self.store.uncaptioned(limit=CANDIDATES + min(waiting, RETRIES))
        backlog = self.store.backlog()
        with self._lock:
            self._candidates = [e for e in entries if e.id not in self._in_flight]
            self.backlog = backlog
            self.refreshes += 1

    def peek(self) -> TimelineEntry | None:
        """The entry to caption next (newest first), or None: none old enough, or all waiting out a backoff."""
        now = self._clock()
        with self._lock:
            for e in self._candidates:
                end = e.end_wall_time if e.end_wall_time is not None else e.wall_time
                if end > now - self.grace_s or e.id in self._in_flight:
                    continue
                retry = self._retry.get(e.id)
                if retry is not None and retry[0] > now:
                    continue
                return e
        return None

    def take(self, entry: TimelineEntry) -> None:
        """The scheduler starts captioning `entry` (caption() or caption_async() follows)."""
        with self._lock:
            self._in_flight.add(entry.id)
            self._candidates = [e for e in self._candidates if e.id != entry.id]
            empty = not self._candidates
        if empty and self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Keep the candidates fresh (the store is read in a thread). Runs until cancelled."""
        self._wake = asyncio.Event()
        try:
            while True:
                try:
                    await asyncio.to_thread(self.refresh)
                except Exception as e:  # the store is unreadable for a moment: counted, tried again
                    contain("timeline.backfill_refresh", e, log, "timeline backfill: reading the backlog")
                self._wake.clear()
                try:
                    async with asyncio.timeout(self.refresh_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._wake = None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    # ---- one caption ------------------------------------------------------------------------------------------

    def caption(self, entry: TimelineEntry, describe: Describe) -> str | None:
        """Blocking: caption `entry` from its keyframes and store it. None when it failed (counted, retried later)."""
        try:
            jpegs = self._keyframes(entry)
            images = [decode_jpeg(j) for _, j in jpegs]
            times = [entry.keyframes[i].pts for i, _ in jpegs]
            text = describe(images, times, f"{intro(entry)} {CAPTION_PROMPT}")
            return self._store(entry, text)
        except Exception as e:
            self._failed(entry, e)
            return None
        finally:
            self._done(entry)

    async def caption_async(self, entry: TimelineEntry, describe: DescribeAsync) -> str | None:
        """On the event loop (the store's I/O in threads): as caption(), with a describer that awaits."""
        try:
            jpegs = await asyncio.to_thread(self._keyframes, entry)
            labels = [f"{clock_label(entry.keyframes[i].wall_time)} ({entry.keyframes[i].role}):" for i, _ in jpegs]
            text = await describe([j for _, j in jpegs], labels, CAPTION_PROMPT, intro(entry))
            return await asyncio.to_thread(self._store, entry, text)
        except Exception as e:  # (cancelled: preempted or stopping, not a failure; it stays in the backlog)
            await asyncio.to_thread(self._failed, entry, e)
            return None
        finally:
            self._done(entry)

    def _keyframes(self, entry: TimelineEntry) -> list[tuple[int, bytes]]:
        out = []
        for i in range(len(entry.keyframes)):
            data = self.store.keyframe_bytes(entry.id, i)
            if data is not None:
                out.append((i, data))
        if not out:
            raise NoKeyframesError(f"entry {entry.id} has no keyframe left")
        return out

    def _store(self, entry: TimelineEntry, text: str) -> str:
        text = " ".join(text.split())[:CAPTION_CHARS] or "(no caption)"
        self.store.set_caption(entry.id, text)
        with self._lock:
            self.backfilled += 1
            self.backlog = max(0, self.backlog - 1)
            self._retry.pop(entry.id, None)
        return text

    def _failed(self, entry: TimelineEntry, error: BaseException) -> None:
        with self._lock:
            self.failed += 1
            _, failures = self._retry.pop(entry.id, (0.0, 0))
            failures += 1
            wait = self.retry_max_s if isinstance(error, NoKeyframesError) else self.retry_s * 2 ** (failures - 1)
            self._retry[entry.id] = (self._clock() + min(wait, self.retry_max_s), failures)
            while len(self._retry) > RETRIES:
                self._retry.popitem(last=False)
        if isinstance(error, NoKeyframesError):
            log.info("timeline: %s", error)
        else:
            contain("timeline.backfill", error, log, f"timeline: caption of {entry.id} ({entry.camera})")
        reason = f"{type(error).__name__}: {error}"[:300]
        try:
            self.store.caption_failed(entry.id, reason)
        except Exception as e:  # the failure is counted here either way
            contain("timeline.backfill_store", e, log, f"timeline: recording the failed caption of {entry.id}")

    def _done(self, entry: TimelineEntry) -> None:
        with self._lock:
            self._in_flight.discard(entry.id)

    # ---- health -----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The /healthz part (and /metrics): the backlog, what was backfilled, what failed, what waits a retry."""
        with self._lock:
            return {
                "backlog": self.backlog,
                "backfilled": self.backfilled,
                "failed": self.failed,
                "in_flight": len(self._in_flight),
                "waiting_retry": sum(1 for at, _ in self._retry.values() if at > self._clock()),
            }
