"""TimelineStore: the timeline's rows and keyframe files (docs/timeline.md).

Rows live in the event log's database (schema 2, memory/event_log.py: table `timeline`, FTS5 index `timeline_fts`
kept in step by triggers). Writes are queued to the event log's one writer thread (`EventLog.write`); reads run on
this store's own read-only connection (WAL: readers never wait for the writer). Keyframes are JPEG files beside the
database: `<db stem>.keyframes/<camera>/<entry id>-<index>.jpg`, written before their row is queued (a row never names
a file that was never written; a file whose row is lost is deleted by retention's orphan sweep or overwritten).

With semantic search on (`memory.timeline.embeddings`, semantic/), the store holds a SemanticIndex: captions it
sets are hinted to the embedder, and text searches fuse the vector neighbours with BM25 (search.py).

Every method does blocking I/O: call it in a thread (asyncio.to_thread, the picture thread), never on the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from livesight.config import TimelineConfig
from livesight.memory.event_log import EventLog, answers_sql, watches_sql
from livesight.timeline import ranking
from livesight.timeline import search as search_mod
from livesight.timeline.ranking import CorpusStats
from livesight.timeline.retention import Retention
from livesight.timeline.rows import COLUMNS, entry_from_row
from livesight.timeline.semantic.index import SemanticIndex
from livesight.types import TimelineEntry, TimelinePage, TimelineQuery

log = logging.getLogger(__name__)

ENTRY_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")  # ids as new_id makes them; anything else names no file
MAX_KEYFRAMES = 8

_ADD = (
    "INSERT OR REPLACE INTO timeline (id, camera, scene, chunk, pts, end_pts, wall_time, end_wall_time, caption,"
    " caption_state, keyframes, keyframe_bytes, answers, watches)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, c, CASE WHEN c IS NULL THEN ?10 ELSE 'done' END, ?11, ?12,"
    " coalesce(a, ''), coalesce(w, '') FROM (SELECT coalesce(?9, (SELECT caption FROM timeline"
    " WHERE id = ?1 OR (camera = ?2 AND scene = ?3 AND chunk = ?4) ORDER BY caption IS NULL LIMIT 1)) AS c,"
    f" {answers_sql('?2', '?7', 'coalesce(?8, ?7)')} AS a, {watches_sql('?2', '?7', 'coalesce(?8, ?7)')} AS w)"
)


def keyframe_dir(database: str | None) -> Path | None:
    """`livesight.sqlite` → `livesight.keyframes/` next to it; no database (or `:memory:`), no timeline."""
    if not database or database == ":memory:":
        return None
    p = Path(database)
    return p.with_name(p.stem + ".keyframes")


class TimelineStore:
    """Rows written through the EventLog's one writer thread (the event log stays the one writer), read on the
    store's own read connection. Every method does blocking I/O: call it in a thread (asyncio.to_thread / the
    picture thread), never on the event loop."""

    def __init__(
        self,
        event_log: EventLog,
        keyframe_dir: Path | None,
        cfg: TimelineConfig,
        *,
        semantic: SemanticIndex | None = None,
    ) -> None:
        self.log = event_log
        self.semantic = semantic  # semantic search (off: None); opened and closed with the store
        self.dir = keyframe_dir
        self.cfg = cfg
        self._read: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the read connection serves one thread at a time
        self._count_lock = threading.Lock()
        self._key = b""
        self._stats = CorpusStats()
        self._backlog = 0
        self.entries_written = 0
        self.keyframes_written = 0
        self.keyframes_deleted = 0
        self.keyframes_missing = 0  # keyframes asked for whose file is gone (answered 404)
        self.rows_deleted = 0
        self.captions_set = 0
        self.caption_failures = 0
        self.thumbnails_adopted = 0  # schema-1 thumbnails that became keyframe 0 of their migrated entry
        self.retention: Retention | None = None  # started by open()

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the keyframe directory, open the read connection, adopt a migrated database's thumbnails, start
        retention. Raises OSError / sqlite3.Error when the database or directory cannot be used."""
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._read = sqlite3.connect(self.log.path, timeout=10, check_same_thread=False)
        ranking.prepare(self._read)
        self._read.execute("PRAGMA query_only=ON")
        row = self._read.execute("SELECT value FROM meta WHERE key = 'timeline_cursor_key'").fetchone()
        if row is None:
            self.log.write("INSERT OR IGNORE INTO meta VALUES ('timeline_cursor_key', ?)", (secrets.token_hex(16),))
            self.log.flush()
            row = self._read.execute("SELECT value FROM meta WHERE key = 'timeline_cursor_key'").fetchone()
        self._key = bytes.fromhex(row[0]) if row is not None else secrets.token_bytes(16)
        if self._read.execute("SELECT 1 FROM meta WHERE key = 'timeline_thumbnails'").fetchone() is not None:
            self._adopt_thumbnails()
        self.backlog()
        self._stats.corpus(self._read)  # the row count, once at the start rather than in the first search
        if self.semantic is not None:
            try:
                self.semantic.open()  # RuntimeError naming the extra to install when sqlite-vec is missing
            except BaseException:
                self.close()
                raise
        self.retention = Retention(self)
        self.retention.start()

    def close(self) -> None:
        if self.semantic is not None:
            self.semantic.close()
        if self.retention is not None:
            self.retention.stop()
            self.retention = None
        with self._lock:
            if self._read is not None:
                self._read.close()
                self._read = None

    # ---- writes --------------------------------------------------------------------------------------------

    def add_entry(self, entry: TimelineEntry, jpegs: Sequence[bytes]) -> None:
        """A closed entry: its JPEG files are written first (len(jpegs) == len(entry.keyframes)), then the row is
        queued (INSERT OR REPLACE by entry.id). The answers given and the watches that fired on its camera between
        its start and end (from the event log's responses table) are filled in by the store, so they are
        searchable. A caption the entry lacks is kept from the row it replaces (the live caption of its scene)."""
        if len(jpegs) != len(entry.keyframes):
            raise ValueError(f"{len(jpegs)} JPEGs for {len(entry.keyframes)} keyframes of {entry.id}")
        if not ENTRY_ID.match(entry.id):
            raise ValueError(f"bad entry id {entry.id!r}")
        frames = list(zip(entry.keyframes, jpegs, strict=True))[:MAX_KEYFRAMES] if self.dir is not None else []
        size = 0
        for i, (_, data) in enumerate(frames):
            p = self.keyframe_path(entry.camera, entry.id, i)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
            size += len(data)
        kf = json.dumps([{"role": k.role, "pts": k.pts, "wall_time": k.wall_time} for k, _ in frames])
        self.log.write(
            _ADD,
            (
                entry.id,
                entry.camera,
                entry.scene,
                entry.chunk,
                entry.pts,
                entry.end_pts,
                entry.wall_time,
                entry.end_wall_time,
                entry.caption,
                entry.caption_state if entry.caption is None else "done",
                kf,
                size,
            ),
        )
        if entry.caption is not None and self.semantic is not None:
            self.semantic.hint(entry.id)
        with self._count_lock:
            self.entries_written += 1
            self.keyframes_written += len(frames)
            if entry.caption is None and entry.caption_state == "pending" and frames:
                self._backlog += 1

    def set_caption(self, entry_id: str, caption: str) -> None:
        """The entry's caption (caption_state → "done")."""
        self.log.write("UPDATE timeline SET caption = ?, caption_state = 'done' WHERE id = ?", (caption, entry_id))
        if self.semantic is not None:
            self.semantic.hint(entry_id)
        with self._count_lock:
            self.captions_set += 1
            self._backlog = max(0, self._backlog - 1)

    def caption_failed(self, entry_id: str, reason: str) -> None:
        """Counted; the entry stays pending for a later try."""
        self.log.write("UPDATE timeline SET caption_failures = caption_failures + 1 WHERE id = ?", (entry_id,))
        with self._count_lock:
            self.caption_failures += 1
        log.debug("timeline entry %s: caption failed (%s)", entry_id, reason)

    def flush(self) -> None:
        """Wait until queued rows are committed."""
        self.log.flush()

    # ---- reads ---------------------------------------------------------------------------------------------

    def search(self, query: TimelineQuery) -> TimelinePage:
        """Raises ValueError (with the reason) for a bad query: a text with nothing to search, a bad cursor. With
        semantic search on, a text's vector is asked for first (cached; when it does not come, BM25 alone)."""
        near = None
        if self.semantic is not None and query.text is not None:
            search_mod.search_terms(query.text)  # a text with nothing to search is refused before it is embedded
            vec = self.semantic.query_vector(query.text)
            if vec is not None:
                with self._lock:
                    lo, hi = search_mod.start_bounds(
                        self._conn(), query.start, query.end, newest=self.semantic.scan_rows
                    )
                near = self.semantic.nearest(vec, cameras=query.cameras, lo=lo, hi=hi)  # without the read lock
        with self._lock:
            return search_mod.search(self._conn(), query, self._key, self._stats, near)

    def get(self, entry_id: str) -> TimelineEntry | None:
        with self._lock:
            r = self._conn().execute(f"SELECT {COLUMNS} FROM timeline t WHERE id = ?", (entry_id,)).fetchone()
        return entry_from_row(r) if r is not None else None

    def keyframe_bytes(self, entry_id: str, index: int) -> bytes | None:
        """The entry's index-th keyframe (JPEG); None when the entry, that keyframe or its file is gone."""
        if self.dir is None or not ENTRY_ID.match(entry_id) or not 0 <= index < MAX_KEYFRAMES:
            return None
        entry = self.get(entry_id)
        if entry is None or index >= len(entry.keyframes):
            return None
        try:
            return self.keyframe_path(entry.camera, entry_id, index).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            with self._count_lock:
                self.keyframes_missing += 1
            return None

    def between(self, camera: str | None, start: float, end: float, *, limit: int) -> list[TimelineEntry]:
        """Entries overlapping [start, end], oldest first (for summaries)."""
        with self._lock:
            return search_mod.between(self._conn(), camera, start, end, limit)

    def uncaptioned(self, *, limit: int) -> list[TimelineEntry]:
        """Closed entries with keyframes whose caption is pending, newest first (what backfill can caption)."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {COLUMNS} FROM timeline t WHERE caption_state = 'pending' AND end_wall_time IS NOT NULL"
                    " AND keyframe_bytes > 0 ORDER BY wall_time DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [entry_from_row(r) for r in rows]

    def backlog(self) -> int:
        """How many entries wait for a caption (closed, with keyframes, pending)."""
        with self._lock:
            (n,) = (
                self._conn()
                .execute(
                    "SELECT count(*) FROM timeline WHERE caption_state = 'pending' AND end_wall_time IS NOT NULL"
                    " AND keyframe_bytes > 0"
                )
                .fetchone()
            )
        with self._count_lock:
            self._backlog = int(n)
        return int(n)

    def counters(self) -> dict[str, int]:
        """In-memory counts (no I/O: safe on the event loop). `caption_backlog` is as of the last backlog() call,
        kept up to date by this store's own writes."""
        return {
            "entries_written": self.entries_written,
            "keyframes_written": self.keyframes_written,
            "keyframes_deleted": self.keyframes_deleted,
            "keyframes_missing": self.keyframes_missing,
            "rows_deleted": self.rows_deleted,
            "captions_set": self.captions_set,
            "caption_failures": self.caption_failures,
            "caption_backlog": self._backlog,
            "thumbnails_adopted": self.thumbnails_adopted,
            **(self.semantic.counters() if self.semantic is not None else {}),
        }

    def count_deletions(self, *, keyframes: int, rows: int) -> None:
        """Retention's deletions, for counters()."""
        with self._count_lock:
            self.keyframes_deleted += keyframes
            self.rows_deleted += rows

    # ---- files ---------------------------------------------------------------------------------------------

    def keyframe_path(self, camera: str, entry_id: str, index: int) -> Path:
        assert self.dir is not None
        return self.dir / camera / f"{entry_id}-{index}.jpg"

    def _conn(self) -> sqlite3.Connection:
        if self._read is None:
            raise RuntimeError("timeline store is not open")
        return self._read

    def _adopt_thumbnails(self) -> None:
        """A database migrated from schema 1: each scene's thumbnail (`<db stem>.thumbnails/<camera>/<scene>.jpg`)
        becomes keyframe 0 ("first") of the scene's entry, where the file is there."""
        thumbs = Path(self.log.path)
        thumbs = thumbs.with_name(thumbs.stem + ".thumbnails")
        if self.dir is not None and thumbs.is_dir():
            rows = self._conn().execute(
                "SELECT id, camera, scene, pts, wall_time FROM timeline WHERE chunk = 0 AND keyframe_bytes = 0"
            )
            for entry_id, camera, scene, pts, wall in rows.fetchall():
                src = thumbs / camera / f"{scene}.jpg"
                if not src.is_file() or not ENTRY_ID.match(entry_id):
                    continue
                dst = self.keyframe_path(camera, entry_id, 0)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)  # the thumbnail store may delete its file later: ours stays
                except FileExistsError:
                    pass
                except OSError:
                    shutil.copyfile(src, dst)
                kf = json.dumps([{"role": "first", "pts": pts, "wall_time": wall}])
                self.log.write(
                    "UPDATE timeline SET keyframes = ?, keyframe_bytes = ? WHERE id = ?",
                    (kf, dst.stat().st_size, entry_id),
                )
                self.thumbnails_adopted += 1
        self.log.write("DELETE FROM meta WHERE key = 'timeline_thumbnails'")
        self.log.flush()
        if self.thumbnails_adopted:
            log.info("timeline: %d scene thumbnails adopted as keyframes", self.thumbnails_adopted)
