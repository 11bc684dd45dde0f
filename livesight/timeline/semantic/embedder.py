"""One thread that embeds captioned timeline entries into the sidecar (vectors.py).

Where the work comes from, newest first:
  1. hints: the store names an entry whose caption it just set (`set_caption`, `add_entry` with a caption); a bounded
     queue, a hint that does not fit is dropped and counted (the polls below find the entry anyway);
  2. recent rows: every `poll_s`, the newest RECENT_ROWS rows of the timeline with a caption (the live memory's
     captions land through `EventLog.caption`, which names no entry);
  3. catch-up: from the newest row down, a page of CATCHUP_PAGE captioned rows per round while nothing else waits,
     until the whole history was seen once (a timeline that had captions before embeddings were turned on).
A row is embedded when the sidecar lacks it or holds it for another entry id or caption (digest). Requests carry up
to BATCH captions; a failed request (the server away, a timeout, an error) is counted and retried after a jittered
backoff (BACKOFF_START_S doubling to BACKOFF_MAX_S), the rows kept (at most MAX_PENDING, the oldest dropped and
counted). Now and then one page of the sidecar is checked against the timeline and vectors of rows that are gone
(retention, replaced rows) are deleted.

The main database is read on this thread's own read-only stdlib connection; the sidecar is written only here.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import sqlite3
import threading
import time
from typing import Any

from livesight.errors import contain
from livesight.timeline.semantic.client import MAX_BATCH, EmbeddingClient, EmbeddingError
from livesight.timeline.semantic.vectors import VectorRow, VectorStore

log = logging.getLogger(__name__)

BATCH = MAX_BATCH
QUEUE_SIZE = 1024
MAX_PENDING = 4096
RECENT_ROWS = 2048
CATCHUP_PAGE = 256
PRUNE_PAGE = 1000
PRUNE_EVERY_S = 60.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0

_ROW = "SELECT rowid, id, camera, wall_time, caption FROM timeline"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Embedder:
    def __init__(self, database: str, vectors: VectorStore, client: EmbeddingClient, *, poll_s: float = 2.0) -> None:
        self.database = database
        self.vectors = vectors
        self.client = client
        self.poll_s = poll_s
        self._hints: queue.Queue[str] = queue.Queue(QUEUE_SIZE)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._want = 0  # sync() requests
        self._done = 0  # the last request answered by an idle round
        self._pending: dict[int, tuple[str, str, float, str]] = {}  # rowid → (id, camera, wall_time, caption)
        self._catchup: int | None = None  # rowid the catch-up continues below; 0: done
        self._recent_at = 0.0
        self._prune_at = 0.0
        self._prune_after = 0
        self._streak = 0
        self._thread: threading.Thread | None = None
        self.embedded = 0  # rows embedded
        self.requests = 0
        self.failures = 0  # requests that failed
        self.hints_dropped = 0
        self.pending_dropped = 0
        self.vectors_deleted = 0
        self.last_error = ""

    # ---- the store's side ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timeline-embedder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def hint(self, entry_id: str) -> None:
        """An entry whose caption was just set (never blocks)."""
        try:
            self._hints.put_nowait(entry_id)
        except queue.Full:
            self.hints_dropped += 1
            return
        self._wake.set()

    def sync(self, timeout: float) -> bool:
        """Wait until a round that began after this call found nothing left to embed (tests, benchmarks). False when
        `timeout` passed first (e.g. the server is away)."""
        with self._cond:
            self._want += 1
            target = self._want
        self._recent_at = 0.0  # the next round looks at the newest rows again
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    @property
    def pending(self) -> int:
        return len(self._pending) + self._hints.qsize()

    # ---- the thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=10, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=ON")
            while not self._stop.is_set():
                try:
                    self._round(conn)
                except Exception as e:  # sqlite3's, pysqlite3's, the disk's: counted, logged once per kind
                    contain("timeline.embedder", e, log, "an embedding round")
                    self._stop.wait(BACKOFF_MAX_S)
        finally:
            conn.close()

    def _round(self, conn: sqlite3.Connection) -> None:
        with self._cond:
            asked = self._want
        self._gather(conn)
        if self._pending:
            if not self._embed_batch():
                self._stop.wait(self._backoff())
            return
        if time.monotonic() >= self._prune_at:
            self._prune(conn)
        if self._catchup == 0 and self._hints.empty():  # nothing left: answer sync() and sleep
            with self._cond:
                self._done = max(self._done, asked)
                self._cond.notify_all()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _gather(self, conn: sqlite3.Connection) -> None:
        found: dict[int, tuple[str, str, float, str]] = {}
        ids: list[str] = []
        while len(ids) < QUEUE_SIZE:
            try:
                ids.append(self._hints.get_nowait())
            except queue.Empty:
                break
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = conn.execute(f"{_ROW} WHERE id IN ({','.join('?' * len(part))}) AND caption IS NOT NULL", part)
            found.update(_rows(rows))
        now = time.monotonic()
        if now - self._recent_at >= self.poll_s:
            self._recent_at = now
            (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM timeline").fetchone()
            if self._catchup is None:
                self._catchup = int(top) + 1
            found.update(_rows(conn.execute(f"{_ROW} WHERE rowid > ? AND caption IS NOT NULL", (top - RECENT_ROWS,))))
        if self._catchup and len(self._pending) + len(found) < BATCH:
            page = conn.execute(
                f"{_ROW} WHERE rowid < ? AND caption IS NOT NULL ORDER BY rowid DESC LIMIT ?",
                (self._catchup, CATCHUP_PAGE),
            ).fetchall()
            self._catchup = min(r[0] for r in page) if page else 0
            found.update(_rows(page))
        if not found:
            return
        have = self.vectors.digests(found)
        for rowid, row in found.items():
            if have.get(rowid) != (row[0], digest(row[3])):
                self._pending[rowid] = row
        if len(self._pending) > MAX_PENDING:
            for rowid in sorted(self._pending)[: len(self._pending) - MAX_PENDING]:
                del self._pending[rowid]
                self.pending_dropped += 1

    def _embed_batch(self) -> bool:
        chosen = sorted(self._pending, reverse=True)[:BATCH]  # newest first
        texts = [self._pending[r][3] for r in chosen]
        self.requests += 1
        try:
            vecs = self.client.embed(texts)
        except EmbeddingError as e:
            self.failures += 1
            self._streak += 1
            self.last_error = str(e)
            if self._streak <= 3 or self._streak % 50 == 0:
                log.warning("embeddings from %s: %s (%d in a row)", self.client.shown_url, e, self._streak)
            return False
        if self._streak:
            log.info("embeddings from %s: the server answers again", self.client.shown_url)
        self._streak = 0
        rows = []
        for rowid, vec in zip(chosen, vecs, strict=True):
            entry_id, camera, wall, caption = self._pending[rowid]
            rows.append(VectorRow(rowid, entry_id, digest(caption), camera, wall, vec))
        self.vectors.put(rows)
        for rowid in chosen:
            del self._pending[rowid]
        self.embedded += len(rows)
        return True

    def _backoff(self) -> float:
        return min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self._streak - 1)) * random.uniform(0.8, 1.2)

    def _prune(self, conn: sqlite3.Connection) -> None:
        """One page of the sidecar checked against the timeline; vectors of rows that are gone are deleted."""
        page = self.vectors.page(self._prune_after, PRUNE_PAGE)
        if not page:
            self._prune_after = 0
            self._prune_at = time.monotonic() + PRUNE_EVERY_S
            return
        self._prune_after = page[-1]
        have = self.vectors.digests(page)
        marks = ",".join("?" * len(page))
        alive = dict(conn.execute(f"SELECT rowid, id FROM timeline WHERE rowid IN ({marks})", page).fetchall())
        gone = [r for r in page if alive.get(r) != have.get(r, ("",))[0]]
        self.vectors.delete(gone)
        self.vectors_deleted += len(gone)

    def counters(self) -> dict[str, Any]:
        return {
            "embedded": self.embedded,
            "embed_requests": self.requests,
            "embed_failures": self.failures,
            "embed_pending": self.pending,
            "embed_hints_dropped": self.hints_dropped,
            "embed_pending_dropped": self.pending_dropped,
            "vectors_deleted": self.vectors_deleted,
        }


def _rows(rows: Any) -> dict[int, tuple[str, str, float, str]]:
    return {int(r[0]): (r[1], r[2], float(r[3]), r[4]) for r in rows if r[4]}
