"""SQLite event log (WAL): scenes, captions, questions and answers, proactive messages, camera state changes.

Writes never block the event loop or the model: they go through a bounded queue (overflow policy: drop the
newest and count it) to one writer thread that commits in small batches. WAL + synchronous=NORMAL means a
`kill -9` loses at most the batch in flight; every committed row survives and the database always opens.
Reads (`last_scene`, `recent_*`) use their own connection. Retention: at most `max_rows` rows per table.

Failures are visible: a batch that fails to commit is counted in `rows_dropped` (with the error in `last_error`)
and the writer goes on with the next batch; rows offered while the writer thread is dead are counted too, and
`health()` reports the state (`ok`, `degraded` after a failed write, `failed` when the writer is gone).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from livesight.errors import contain
from livesight.types import CameraStatus, SceneChange

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (
    id INTEGER PRIMARY KEY, camera TEXT NOT NULL, scene INTEGER NOT NULL, pts REAL NOT NULL,
    wall_time REAL NOT NULL, score REAL NOT NULL, caption TEXT, UNIQUE (camera, scene));
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY, response_id TEXT NOT NULL, camera TEXT NOT NULL, kind TEXT NOT NULL,
    scene INTEGER, question TEXT, answer TEXT NOT NULL, ttft_ms REAL, wall_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS camera_states (
    id INTEGER PRIMARY KEY, camera TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    wall_time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS scenes_camera ON scenes (camera, scene);
CREATE INDEX IF NOT EXISTS responses_camera ON responses (camera, id);
"""
TABLES = ("scenes", "responses", "camera_states")

_STOP = object()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class EventLog:
    def __init__(self, path: str | Path, *, max_rows: int = 100_000, queue_size: int = 10_000) -> None:
        self.path = str(path)
        self.max_rows = max_rows
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._read = _connect(self.path)
            with self._read:
                self._read.executescript(SCHEMA)
                row = self._read.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._read.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"schema version {row[0]} is newer than this livesight ({SCHEMA_VERSION})"
                    )
        except (sqlite3.Error, OSError) as e:
            from livesight.errors import ConfigError

            raise ConfigError(f"memory.database {self.path}: {e}") from None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._read_lock = threading.Lock()  # the read connection may be used from the picture thread too
        self.dropped = 0  # rows lost: queue full, failed commits, writer gone (one writer each: see _put/_run)
        self.failed_rows = 0  # rows in batches that failed to commit (written by the writer thread only)
        self.written = 0
        self.last_error = ""
        self._closing = False
        self._drop_lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name="livesight-eventlog", daemon=True)
        self._writer.start()

    # ---- writes (any thread; never block) -----------------------------------------------------------------

    def _put(self, sql: str, args: tuple[Any, ...]) -> None:
        if self._writer.is_alive():
            try:
                self._queue.put_nowait((sql, args))
                return
            except queue.Full:
                pass
        with self._drop_lock:  # callers: the event loop and the model worker thread
            self.dropped += 1

    def health(self) -> dict[str, Any]:
        if not self._writer.is_alive() and not self._closing:
            state = "failed"
        elif self.failed_rows:
            state = "degraded"
        else:
            state = "ok"
        return {
            "state": state,
            "reason": self.last_error,
            "rows_written": self.written,
            "rows_dropped": self.dropped + self.failed_rows,
            "queued": self._queue.qsize(),
        }

    def scene(self, change: SceneChange) -> None:
        self._put(
            "INSERT OR REPLACE INTO scenes (camera, scene, pts, wall_time, score) VALUES (?, ?, ?, ?, ?)",
            (change.camera, change.scene, change.pts, change.wall_time, change.score),
        )

    def caption(self, camera: str, scene: int, caption: str) -> None:
        self._put("UPDATE scenes SET caption = ? WHERE camera = ? AND scene = ?", (caption, camera, scene))

    def camera_state(self, status: CameraStatus) -> None:
        self._put(
            "INSERT INTO camera_states (camera, state, reason, wall_time) VALUES (?, ?, ?, ?)",
            (status.camera, status.state.value, status.reason, status.wall_time),
        )

    def response(
        self,
        *,
        response_id: str,
        camera: str,
        kind: str,
        question: str | None,
        answer: str,
        ttft_ms: float | None,
        scene: int | None = None,
    ) -> None:
        self._put(
            "INSERT INTO responses (response_id, camera, kind, scene, question, answer, ttft_ms, wall_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (response_id, camera, kind, scene, question, answer, ttft_ms, time.time()),
        )

    # ---- reads -------------------------------------------------------------------------------------------

    def last_scene(self, camera: str) -> int:
        """Highest scene number recorded for the camera (0 if none): numbering continues after a restart."""
        self.flush()
        row = self._read.execute("SELECT MAX(scene) FROM scenes WHERE camera = ?", (camera,)).fetchone()
        return int(row[0] or 0)

    def rows(self, table: str, limit: int = 100) -> list[dict[str, Any]]:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        self.flush()
        cur = self._read.execute(f"SELECT * FROM {table} ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def scenes(self, camera: str, limit: int = 100) -> list[dict[str, Any]]:
        """The camera's latest scenes, newest first (no flush: what is committed; for the HTTP scene list)."""
        with self._read_lock:
            cur = self._read.execute(
                "SELECT scene, pts, wall_time, caption FROM scenes WHERE camera = ? ORDER BY scene DESC LIMIT ?",
                (camera, limit),
            )
            return [{"scene": r[0], "pts": r[1], "wall_time": r[2], "caption": r[3]} for r in cur.fetchall()]

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is committed."""
        if not self._writer.is_alive():
            return
        done = threading.Event()
        self._queue.put((None, done), timeout=timeout)
        done.wait(timeout)

    def close(self) -> None:
        self._closing = True
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
        self._read.close()

    def _run(self) -> None:
        conn = _connect(self.path)
        pending = 0
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while len(batch) < 256:  # commit what is waiting together
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(it is _STOP for it in batch)
                rows = [it for it in batch if it is not _STOP and it[0] is not None]  # type: ignore[index]
                try:
                    with conn:
                        for sql, args in rows:  # type: ignore[misc]
                            conn.execute(sql, args)
                    self.written += len(rows)
                    pending += len(rows)
                except sqlite3.Error as e:  # this batch is lost (counted); the next one is tried
                    self.failed_rows += len(rows)
                    if not self.last_error:
                        log.error("event log %s: write failed (%s); rows are dropped and counted", self.path, e)
                    self.last_error = f"{type(e).__name__}: {e}"
                for it in batch:
                    if isinstance(it, tuple) and it[0] is None:
                        it[1].set()
                if pending >= 1000:
                    try:
                        self._trim(conn)
                    except sqlite3.Error as e:  # retention is retried after the next 1000 rows
                        self.last_error = f"trim: {type(e).__name__}: {e}"
                    pending = 0
                if stop:
                    return
        except Exception as e:  # the writer is gone: health() says failed, further rows are counted as dropped
            self.last_error = f"writer died: {type(e).__name__}: {e}"
            contain("event_log.writer", e, log, f"event log {self.path}: the writer thread died (events not recorded)")
        finally:
            conn.close()

    def _trim(self, conn: sqlite3.Connection) -> None:
        with conn:
            for t in TABLES:
                conn.execute(f"DELETE FROM {t} WHERE id <= (SELECT MAX(id) FROM {t}) - ?", (self.max_rows,))
