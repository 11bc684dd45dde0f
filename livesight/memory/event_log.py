"""SQLite event log (WAL): scenes, captions, questions and answers, proactive messages, camera state changes.

Writes never block the event loop or the model: they go through a bounded queue (overflow policy: drop the
newest and count it) to one writer thread that commits in small batches. WAL + synchronous=NORMAL means a
`kill -9` loses at most the batch in flight; every committed row survives and the database always opens.
Reads (`last_scene`, `recent_*`) use their own connection. Retention: at most `max_rows` rows per table.

Schema version 2 adds the timeline (livesight/timeline/, docs/timeline.md): a `timeline` table of entries (a scene, or
a chunk of a long one) with an FTS5 index over caption, answers and watches kept in step by triggers. Every scene
opens an entry (closed when the camera's next scene starts; the capture may replace it with its own closed entries
with keyframes), and a scene's caption also fills its entries that have none. A schema-1 database migrates in place
when opened: its scenes become entries (end = the next scene's start), captions kept; `meta.timeline_thumbnails = 1`
tells the timeline store to adopt today's thumbnail files as keyframes. Other writers queue their statements with
`write(sql, args)`: this stays the one writer.

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
from livesight.ids import new_id
from livesight.types import CameraStatus, SceneChange

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SCHEMA_V1 = """
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
# the timeline (v2). `keyframes`: JSON [{"role", "pts", "wall_time"}]; `answers`/`watches`: one per line
TIMELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS timeline (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, camera TEXT NOT NULL, scene INTEGER NOT NULL,
    chunk INTEGER NOT NULL DEFAULT 0, pts REAL NOT NULL, end_pts REAL, wall_time REAL NOT NULL, end_wall_time REAL,
    caption TEXT, caption_state TEXT NOT NULL DEFAULT 'pending', caption_failures INTEGER NOT NULL DEFAULT 0,
    keyframes TEXT NOT NULL DEFAULT '[]', keyframe_bytes INTEGER NOT NULL DEFAULT 0,
    watches TEXT NOT NULL DEFAULT '', answers TEXT NOT NULL DEFAULT '', UNIQUE (camera, scene, chunk));
CREATE INDEX IF NOT EXISTS timeline_camera_time ON timeline (camera, wall_time);
CREATE INDEX IF NOT EXISTS timeline_time ON timeline (wall_time);
CREATE INDEX IF NOT EXISTS timeline_open ON timeline (camera) WHERE end_wall_time IS NULL;
CREATE INDEX IF NOT EXISTS timeline_pending ON timeline (caption_state, wall_time) WHERE caption_state = 'pending';
CREATE INDEX IF NOT EXISTS timeline_kept ON timeline (wall_time, keyframe_bytes) WHERE keyframe_bytes > 0;
CREATE INDEX IF NOT EXISTS responses_time ON responses (camera, wall_time);
CREATE VIRTUAL TABLE IF NOT EXISTS timeline_fts USING fts5(
    caption, answers, watches, content='timeline', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS timeline_ai AFTER INSERT ON timeline BEGIN
    INSERT INTO timeline_fts (rowid, caption, answers, watches)
        VALUES (new.rowid, new.caption, new.answers, new.watches);
    UPDATE meta SET value = max(CAST(value AS REAL), coalesce(new.end_wall_time - new.wall_time, 0))
        WHERE key = 'timeline_max_span';
END;
CREATE TRIGGER IF NOT EXISTS timeline_ad AFTER DELETE ON timeline BEGIN
    INSERT INTO timeline_fts (timeline_fts, rowid, caption, answers, watches)
        VALUES ('delete', old.rowid, old.caption, old.answers, old.watches);
END;
CREATE TRIGGER IF NOT EXISTS timeline_au AFTER UPDATE OF caption, answers, watches ON timeline BEGIN
    INSERT INTO timeline_fts (timeline_fts, rowid, caption, answers, watches)
        VALUES ('delete', old.rowid, old.caption, old.answers, old.watches);
    INSERT INTO timeline_fts (rowid, caption, answers, watches)
        VALUES (new.rowid, new.caption, new.answers, new.watches);
END;
CREATE TRIGGER IF NOT EXISTS timeline_span AFTER UPDATE OF end_wall_time ON timeline BEGIN
    UPDATE meta SET value = max(CAST(value AS REAL), coalesce(new.end_wall_time - new.wall_time, 0))
        WHERE key = 'timeline_max_span';
END;
INSERT OR IGNORE INTO meta VALUES ('timeline_max_span', '0');
"""
SCHEMA = SCHEMA_V1 + TIMELINE_SCHEMA
TABLES = ("scenes", "responses", "camera_states")


def answers_sql(camera: str, start: str, end: str) -> str:
    """SQL of the answers given on `camera` between `start` and `end` (SQL expressions), one per line (a question's
    answer follows its question), at most 4000 characters: what makes an entry findable by what was said then."""
    return (
        "(SELECT substr(group_concat(CASE WHEN r.kind = 'query' THEN coalesce(r.question, '') || ' | ' || r.answer"
        " ELSE r.answer END, char(10)), 1, 4000) FROM responses r"
        f" WHERE r.camera = {camera} AND r.kind IN ('query', 'proactive') AND r.wall_time BETWEEN {start} AND {end})"
    )


def watches_sql(camera: str, start: str, end: str) -> str:
    """SQL of the watches that fired (answered yes) on `camera` between `start` and `end`, one per line."""
    return (
        "(SELECT substr(group_concat(replace(r.question, ' Answer yes or no.', ''), char(10)), 1, 2000)"
        f" FROM responses r WHERE r.camera = {camera} AND r.kind = 'watch' AND r.answer LIKE 'yes%'"
        f" AND r.wall_time BETWEEN {start} AND {end})"
    )


_OPEN_ENTRY = "INSERT OR IGNORE INTO timeline (id, camera, scene, chunk, pts, wall_time) VALUES (?, ?, ?, 0, ?, ?)"
_CLOSE_ENTRIES = (
    "UPDATE timeline SET end_pts = ?1, end_wall_time = ?2,"
    f" answers = coalesce({answers_sql('timeline.camera', 'timeline.wall_time', '?2')}, ''),"
    f" watches = coalesce({watches_sql('timeline.camera', 'timeline.wall_time', '?2')}, '')"
    " WHERE camera = ?3 AND end_wall_time IS NULL AND scene < ?4"
)
_CAPTION_ENTRIES = (
    "UPDATE timeline SET caption = ?, caption_state = 'done' WHERE camera = ? AND scene = ? AND caption IS NULL"
)

_STOP = object()
_GROUP = object()  # an item of several statements: one event, committed together, counted as one row


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA recursive_triggers=ON")  # INSERT OR REPLACE's deletes keep the FTS index in step
    return conn


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 → 2 (in the caller's transaction): every scene becomes a timeline entry (end = the camera's next
    scene's start; the last stays open), its caption kept; the answers and watches during it filled in."""

    rows = conn.execute("SELECT camera, scene, pts, wall_time, caption FROM scenes ORDER BY camera, scene").fetchall()
    out = []
    for i, (camera, scene, pts, wall, caption) in enumerate(rows):
        nxt = rows[i + 1] if i + 1 < len(rows) and rows[i + 1][0] == camera else None
        out.append(
            (
                new_id("tl_"),
                camera,
                scene,
                pts,
                nxt[2] if nxt else None,
                wall,
                nxt[3] if nxt else None,
                caption,
                "done" if caption else "pending",
            )
        )
    out.sort(key=lambda r: r[5])  # rowids in time order (search narrows by rowid ranges)
    conn.executemany(
        "INSERT OR IGNORE INTO timeline (id, camera, scene, chunk, pts, end_pts, wall_time, end_wall_time, caption,"
        " caption_state) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
        out,
    )
    end = "coalesce(timeline.end_wall_time, 1e18)"
    conn.execute(
        f"UPDATE timeline SET answers = coalesce({answers_sql('timeline.camera', 'timeline.wall_time', end)}, ''),"
        f" watches = coalesce({watches_sql('timeline.camera', 'timeline.wall_time', end)}, '')"
    )
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('timeline_thumbnails', '1')")


class EventLog:
    def __init__(
        self, path: str | Path, *, max_rows: int = 100_000, queue_size: int = 10_000, timeline: bool = True
    ) -> None:
        """`timeline`: every scene opens a timeline entry (memory.timeline.enabled)."""
        self.path = str(path)
        self.max_rows = max_rows
        self.timeline = timeline
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._read = _connect(self.path)
            self._read.executescript(SCHEMA_V1)
            row = self._read.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {row[0]} is newer than this livesight ({SCHEMA_VERSION})")
            self._read.executescript(TIMELINE_SCHEMA)
            with self._read:  # one transaction: a migration cut short is redone at the next start
                if row is None:
                    self._read.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) < 2:
                    _migrate_v1(self._read)
                    self._read.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
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

    def _put(self, sql: str | object, args: tuple[Any, ...]) -> None:
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

    def write(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Queue one statement for the writer thread (never blocks; dropped and counted when the queue is full).
        For the timeline store and others that keep tables in this database: this stays the one writer."""
        self._put(sql, args)

    def scene(self, change: SceneChange) -> None:
        row: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT OR REPLACE INTO scenes (camera, scene, pts, wall_time, score) VALUES (?, ?, ?, ?, ?)",
                (change.camera, change.scene, change.pts, change.wall_time, change.score),
            )
        ]
        if self.timeline:  # the camera's open entries end here; the new scene opens one
            row.append((_CLOSE_ENTRIES, (change.pts, change.wall_time, change.camera, change.scene)))
            row.append((_OPEN_ENTRY, (new_id("tl_"), change.camera, change.scene, change.pts, change.wall_time)))
        self._put(_GROUP, tuple(row))  # one event: all or nothing, one row in the counts

    def caption(self, camera: str, scene: int, caption: str) -> None:
        self._put(
            _GROUP,
            (
                ("UPDATE scenes SET caption = ? WHERE camera = ? AND scene = ?", (caption, camera, scene)),
                (_CAPTION_ENTRIES, (caption, camera, scene)),
            ),
        )

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
                            for s, a in args if sql is _GROUP else ((sql, args),):
                                conn.execute(s, a)
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
