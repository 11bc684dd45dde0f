"""The daemon's timeline capture and caption backfill (docs/timeline.md).

- Capture: one EntryTracker per camera (timeline/keyframes.py), fed in the model worker's thread by the frame
  pipeline (`CameraLane.entries`). The entries it closes (at scene changes, every `memory.timeline.chunk_s`) come back
  on the event loop (`ModelWorker.on_entries`); their keyframes are encoded (JPEG, longest side at most
  `keyframe_px`, quality `keyframe_quality`) and the entry written (`TimelineStore.add_entry`) in the picture thread
  (daemon/images.py's one thread) — never on the event loop nor in the model worker. At most MAX_PENDING entries with
  pictures wait there (each holds up to 3 model-sized frames); beyond, an entry is written without its pictures, and
  beyond MAX_PENDING_ROWS in all it is lost — both counted. At stop (`close()`, after the worker stopped) every
  camera's open entry is closed and written, and every write awaited: nothing is lost on a clean stop.
- Backfill: `BackfillJobs` is the generation queue's BackfillSource (daemon/generation/queue.py): one entry at a time
  from timeline/backfill.py, captioned in-process by `Backend.describe` in the model worker's thread (the keyframes
  through the vision tower), or with a model server by `describe_jpegs` on the loop (the keyframes as images; the
  remote responder starts those when its slots are free).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from livesight.config import TimelineConfig
from livesight.daemon.generation.queue import BackfillJob, InWorker, OnLoop
from livesight.errors import contain
from livesight.imaging import encode_jpeg
from livesight.model.backend import Backend
from livesight.timeline.backfill import CAPTION_TOKENS, Backfill
from livesight.timeline.keyframes import ClosedEntry, EntryTracker
from livesight.timeline.store import TimelineStore
from livesight.types import TimelineEntry

log = logging.getLogger(__name__)

MAX_PENDING = 32  # closed entries whose pictures wait for the picture thread
MAX_PENDING_ROWS = 512  # …and entries waiting in all (those beyond MAX_PENDING without pictures)

Submit = Callable[..., "asyncio.Future[Any]"]  # run fn(*args) in the picture thread


class TimelineCapture:
    def __init__(self, store: TimelineStore, cfg: TimelineConfig, *, flat_level: float, submit: Submit) -> None:
        self.store = store
        self.cfg = cfg
        self.flat_level = flat_level
        self._submit = submit
        self.trackers: dict[str, EntryTracker] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._with_pictures = 0
        self.entries_closed = 0
        self.entries_written = 0
        self.entries_without_keyframes = 0  # written without pictures: the picture thread was behind
        self.entries_lost = 0  # not written: too many waiting, or the write failed

    def tracker(self, camera: str, scene: int) -> EntryTracker:
        """The camera's tracker (its first frame starts `scene`)."""
        t = EntryTracker(camera, scene=scene, chunk_s=self.cfg.chunk_s, flat_level=self.flat_level)
        self.trackers[camera] = t
        return t

    def closed(self, entries: tuple[ClosedEntry, ...]) -> None:
        """On the loop: entries the frame path closed, to be encoded and written in the picture thread."""
        for c in entries:
            self.entries_closed += 1
            if len(self._pending) >= MAX_PENDING_ROWS:
                self.entries_lost += 1
                log.warning(
                    "timeline: entry of %s scene %d lost (%d writes waiting)",
                    c.entry.camera,
                    c.entry.scene,
                    len(self._pending),
                )
                continue
            pictures = self._with_pictures < MAX_PENDING
            if not pictures:
                self.entries_without_keyframes += 1
                c = ClosedEntry(_without_keyframes(c.entry), ())
            self._with_pictures += pictures
            fut = self._submit(self._write, c)
            self._pending.add(fut)
            fut.add_done_callback(partial(self._written, c.entry, pictures))

    def _write(self, c: ClosedEntry) -> None:
        """In the picture thread: the keyframes as JPEG, then the entry."""
        px, q = self.cfg.keyframe_px, self.cfg.keyframe_quality
        jpegs = [encode_jpeg(np.asarray(f), q, max_side=px) for f in c.frames]
        self.store.add_entry(c.entry, jpegs)

    def _written(self, entry: TimelineEntry, pictures: bool, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
        self._with_pictures -= pictures
        if fut.cancelled():
            self.entries_lost += 1
            return
        err = fut.exception()
        if err is None:
            self.entries_written += 1
        else:
            self.entries_lost += 1
            contain("timeline.write", err, log, f"timeline: writing the entry of {entry.camera} scene {entry.scene}")

    async def close(self) -> None:
        """The cameras stopped (and the worker with them): every open entry is closed and written; waits for every
        write queued so far."""
        for t in self.trackers.values():
            try:
                self.closed(tuple(t.close()))
            except Exception as e:  # one camera's tracker must not lose the others' entries
                contain("timeline.close", e, log, f"camera {t.camera}: closing its timeline entry")
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def health(self) -> dict[str, Any]:
        return {
            "entries_closed": self.entries_closed,
            "entries_written": self.entries_written,
            "entries_without_keyframes": self.entries_without_keyframes,
            "entries_lost": self.entries_lost,
            "writes_waiting": len(self._pending),
        }


def _without_keyframes(e: TimelineEntry) -> TimelineEntry:
    return TimelineEntry(
        e.id,
        e.camera,
        e.scene,
        e.chunk,
        e.pts,
        e.wall_time,
        e.end_pts,
        e.end_wall_time,
        e.caption,
        (),
        e.watches,
        e.answers,
        e.caption_state,
    )


class BackfillJobs:
    """The generation queue's BackfillSource: the backfill's next entry as a job that captions it, one at a time."""

    def __init__(self, backfill: Backfill, backend: Backend) -> None:
        self.backfill = backfill
        self.backend = backend
        self.remote = not backend.info.vision_encoder  # a model server: describe_jpegs on the loop
        self._offered: TimelineEntry | None = None

    def next_job(self) -> BackfillJob | None:
        if self.backfill.in_flight:
            return None  # one at a time
        entry = self.backfill.peek()
        self._offered = entry
        if entry is None:
            return None
        if self.remote:
            work: Any = OnLoop(partial(self.backfill.caption_async, entry, self._describe_remote))
        else:
            work = InWorker(partial(self.backfill.caption, entry, self._describe_local))
        return BackfillJob(entry.camera, entry.id, work)

    def started(self, job: BackfillJob) -> None:
        entry = self._offered
        assert entry is not None and entry.id == job.entry_id
        self._offered = None
        self.backfill.take(entry)

    def _describe_local(self, images: list[np.ndarray], times: list[float], prompt: str) -> str:
        return self.backend.describe(images, prompt, max_new_tokens=CAPTION_TOKENS, times=times).text

    async def _describe_remote(self, jpegs: list[bytes], labels: list[str], prompt: str, intro: str) -> str:
        describe = self.backend.describe_jpegs  # type: ignore[attr-defined]  # the openai backend's
        r = await describe(jpegs, labels, prompt, intro=intro, max_new_tokens=CAPTION_TOKENS)
        return r.text
