"""Timeline retention, off the hot path (one thread, every `interval_s`): keyframes older than
`memory.timeline.retention_days` or beyond `memory.timeline.max_bytes` in all are deleted, oldest first (their rows
stay, text only: still searchable, still summarised); rows beyond `memory.timeline.max_rows` are deleted, oldest
first, with their keyframes. Every deletion is counted (TimelineStore.counters).

Retention reads on its own connection (WAL: searches never wait for it) and writes through the event log's writer.

Order of a deletion: the rows are changed through the event log's writer first and committed (flush), then the files
are unlinked: a row never names a keyframe that is gone except after a crash between the two, and a missing file
answers 404 anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from livesight.config import TimelineConfig
from livesight.errors import contain
from livesight.memory.event_log import EventLog

log = logging.getLogger(__name__)

BATCH = 2000  # rows changed per step (the writer's queue holds 10,000)
MAX_STEPS = 50  # per run: a huge backlog is worked off over several runs


class Kept(Protocol):
    """What retention works on (the TimelineStore)."""

    log: EventLog
    cfg: TimelineConfig
    dir: Path | None

    def keyframe_path(self, camera: str, entry_id: str, index: int) -> Path: ...

    def count_deletions(self, *, keyframes: int, rows: int) -> None: ...


class Retention:
    def __init__(self, store: Kept, *, interval_s: float = 60.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # run_once from the thread and from a caller (tests, a shutdown pass)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="livesight-timeline-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as e:  # retention is retried at the next interval; counted and logged once per kind
                contain("timeline.retention", e, log, "timeline retention failed (retried later)")

    def run_once(self, now: float | None = None) -> dict[str, int]:
        """One pass; returns what it deleted: {"keyframes": n, "rows": n}."""
        with self._lock:
            return self._pass(time.time() if now is None else now)

    def _pass(self, now: float) -> dict[str, int]:
        cfg = self.store.cfg
        kf = rows = 0
        cutoff = now - cfg.retention_days * 86_400
        for _ in range(MAX_STEPS):  # by age
            batch = self._read(
                "SELECT id, camera, keyframes, keyframe_bytes FROM timeline WHERE keyframe_bytes > 0 AND wall_time < ?"
                " ORDER BY wall_time LIMIT ?",
                (cutoff, BATCH),
            )
            if not batch:
                break
            kf += self._strip(batch)
        (total,) = self._read(
            "SELECT coalesce(sum(keyframe_bytes), 0) FROM timeline INDEXED BY timeline_kept WHERE keyframe_bytes > 0",
            (),
        )[0]
        for _ in range(MAX_STEPS):  # by bytes
            if total <= cfg.max_bytes:
                break
            batch = self._read(
                "SELECT id, camera, keyframes, keyframe_bytes FROM timeline WHERE keyframe_bytes > 0"
                " ORDER BY wall_time LIMIT ?",
                (BATCH,),
            )
            take = []
            for r in batch:
                if total <= cfg.max_bytes:
                    break
                take.append(r)
                total -= r[3]
            if not take:
                break
            kf += self._strip(take)
        (count,) = self._read("SELECT count(*) FROM timeline", ())[0]
        for _ in range(MAX_STEPS):  # rows by count
            excess = count - cfg.max_rows
            if excess <= 0:
                break
            batch = self._read(
                "SELECT id, camera, keyframes, keyframe_bytes FROM timeline ORDER BY wall_time LIMIT ?",
                (min(excess, BATCH),),
            )
            if not batch:
                break
            for r in batch:
                self.store.log.write("DELETE FROM timeline WHERE id = ?", (r[0],))
            self.store.log.flush()
            kf += self._unlink(batch)
            rows += len(batch)
            count -= len(batch)
        self.runs += 1
        self.store.count_deletions(keyframes=kf, rows=rows)
        if kf or rows:
            log.info("timeline retention: %d keyframes and %d rows deleted", kf, rows)
        return {"keyframes": kf, "rows": rows}

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        if self._conn is None:
            self._conn = sqlite3.connect(self.store.log.path, timeout=10, check_same_thread=False)
            self._conn.execute("PRAGMA query_only=ON")
        return self._conn.execute(sql, args).fetchall()

    def _strip(self, batch: list[tuple[object, ...]]) -> int:
        for r in batch:
            self.store.log.write("UPDATE timeline SET keyframes = '[]', keyframe_bytes = 0 WHERE id = ?", (r[0],))
        self.store.log.flush()
        return self._unlink(batch)

    def _unlink(self, batch: list[tuple[object, ...]]) -> int:
        n = 0
        if self.store.dir is None:
            return 0
        for entry_id, camera, frames, _ in batch:
            try:
                count = len(json.loads(str(frames)))
            except ValueError:
                count = 0
            for i in range(count):
                with contextlib.suppress(FileNotFoundError):
                    self.store.keyframe_path(str(camera), str(entry_id), i).unlink()
                n += 1
        return n
