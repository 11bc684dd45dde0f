"""The sidecar file of caption vectors, `<db stem>.vectors.sqlite` beside the event log's database.

sqlite-vec (a `vec0` virtual table: cosine distance, brute force over the rows that pass its metadata filters,
camera and wall_time) needs an SQLite that loads extensions; this Python's `sqlite3` may be built without
`enable_load_extension`, so the sidecar is opened through `pysqlite3` (its own SQLite; the standard module where
pysqlite3 is not installed and it can load extensions) — only the sidecar: the main
database is never opened by a second SQLite library in this process (two libraries' POSIX locks on one file break
each other), and the event log stays its one writer. One thread writes (the embedder); searches read on their own
connection (WAL). Rows are keyed by the main table's rowid; `items` keeps the entry id (a reused rowid is caught) and
a digest of the embedded text (a changed caption is embedded again). A sidecar made with another model is emptied
when opened (its vectors mean nothing to the new one): the embedder fills it again, newest first.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

INSTALL_HINT = "semantic search needs sqlite-vec and pysqlite3: pip install 'livesight[semantic]'"


class VectorRow(NamedTuple):
    rowid: int  # the timeline row's rowid in the main database
    id: str
    digest: str
    camera: str
    wall_time: float
    vector: list[float]


def vectors_path(database: str | None) -> Path | None:
    """`events.sqlite` → `events.vectors.sqlite` next to it; no database file, no sidecar."""
    if not database or database == ":memory:":
        return None
    p = Path(database)
    return p.with_name(p.stem + ".vectors.sqlite")


def _sqlite() -> Any:
    """pysqlite3 where installed; else the standard sqlite3 when it loads extensions; else RuntimeError."""
    try:
        from pysqlite3 import dbapi2

        return dbapi2
    except ImportError:
        import sqlite3

        if hasattr(sqlite3.Connection, "enable_load_extension"):
            return sqlite3
        raise RuntimeError(f"{INSTALL_HINT} (this Python's sqlite3 cannot load extensions)") from None


def _connect(path: Path) -> Any:
    try:
        import sqlite_vec
    except ImportError as e:
        raise RuntimeError(f"{INSTALL_HINT} ({e})") from None
    sqlite = _sqlite()
    conn = sqlite.connect(str(path), timeout=10, check_same_thread=False, isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _blob(vector: Sequence[float]) -> bytes:
    return struct.pack(f"{len(vector)}f", *vector)


class VectorStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._w: Any = None  # the embedder thread's connection
        self._r: Any = None  # searches' connection
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()
        self.dim: int | None = None
        self.reset = False  # emptied when opened (another model)

    def open(self, model: str) -> None:
        """Raises RuntimeError (with how to install) when sqlite-vec or pysqlite3 is missing."""
        self._w = _connect(self.path)
        w = self._w
        w.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        w.execute(
            "CREATE TABLE IF NOT EXISTS items (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, digest TEXT NOT NULL)"
        )
        got = dict(w.execute("SELECT key, value FROM meta").fetchall())
        if got.get("model") != model:
            self.reset = "model" in got
            w.execute("BEGIN")
            w.execute("DROP TABLE IF EXISTS vec")
            w.execute("DELETE FROM items")
            w.execute("DELETE FROM meta")
            w.execute("INSERT INTO meta VALUES ('model', ?)", (model,))
            w.execute("COMMIT")
        elif "dim" in got:
            self.dim = int(got["dim"])
        self._r = _connect(self.path)
        self._r.execute("PRAGMA query_only=ON")

    def close(self) -> None:
        for name in ("_r", "_w"):
            conn = getattr(self, name)
            if conn is not None:
                conn.close()
                setattr(self, name, None)

    # ---- the embedder's side (one thread) --------------------------------------------------------------------

    def digests(self, rowids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """{rowid: (id, digest)} of those already embedded."""
        ids = list(rowids)
        out: dict[int, tuple[str, str]] = {}
        with self._wlock:
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                sql = f"SELECT rowid, id, digest FROM items WHERE rowid IN ({','.join('?' * len(part))})"
                out.update({r: (e, d) for r, e, d in self._w.execute(sql, part).fetchall()})
        return out

    def put(self, rows: Sequence[VectorRow]) -> None:
        """Store (or replace) rows' vectors in one transaction. The first row fixes the dimension; raises
        ValueError for a vector of another length (the server changed models under the same name)."""
        if not rows:
            return
        with self._wlock:
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            try:
                if self.dim is None:
                    dim = len(rows[0].vector)
                    w.execute(
                        f"CREATE VIRTUAL TABLE IF NOT EXISTS vec USING vec0(embedding float[{dim}]"
                        " distance_metric=cosine, camera text, wall_time float)"
                    )
                    w.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
                    self.dim = dim
                for r in rows:
                    if len(r.vector) != self.dim:
                        raise ValueError(f"a vector of {len(r.vector)} numbers, the sidecar holds {self.dim}")
                    w.execute("DELETE FROM vec WHERE rowid = ?", (r.rowid,))
                    w.execute(
                        "INSERT INTO vec (rowid, embedding, camera, wall_time) VALUES (?, ?, ?, ?)",
                        (r.rowid, _blob(r.vector), r.camera, float(r.wall_time)),
                    )
                    w.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", (r.rowid, r.id, r.digest))
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise

    def page(self, after: int, n: int) -> list[int]:
        """Rowids above `after`, ascending (retention's walk over the sidecar)."""
        with self._wlock:
            sql = "SELECT rowid FROM items WHERE rowid > ? ORDER BY rowid LIMIT ?"
            return [r for (r,) in self._w.execute(sql, (after, n))]

    def delete(self, rowids: Sequence[int]) -> None:
        if not rowids:
            return
        with self._wlock:
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(rowids))
            if self.dim is not None:
                w.execute(f"DELETE FROM vec WHERE rowid IN ({marks})", list(rowids))
            w.execute(f"DELETE FROM items WHERE rowid IN ({marks})", list(rowids))
            w.execute("COMMIT")

    # ---- searches' side --------------------------------------------------------------------------------------

    def count(self) -> int:
        with self._rlock:
            return int(self._r.execute("SELECT count(*) FROM items").fetchone()[0])

    def nearest(
        self,
        vector: Sequence[float],
        k: int,
        *,
        cameras: Sequence[str] | None = None,
        lo: float | None = None,
        hi: float | None = None,
    ) -> list[tuple[int, str]]:
        """The k nearest rows (rowid, entry id), nearest first, among those of `cameras` whose start is within
        [lo, hi] (None: unbounded)."""
        conds = ["embedding MATCH ?", "k = ?"]
        args: list[Any] = [_blob(vector), k]
        if cameras is not None:
            conds.append(f"camera IN ({','.join('?' * len(cameras))})")
            args += list(cameras)
        if lo is not None:
            conds.append("wall_time >= ?")
            args.append(float(lo))
        if hi is not None:
            conds.append("wall_time <= ?")
            args.append(float(hi))
        with self._rlock:
            if self._r is None:
                return []
            if self._r.execute("SELECT 1 FROM sqlite_master WHERE name = 'vec'").fetchone() is None:
                return []  # no vector yet: the table is made with the first one
            if self.dim is not None and len(vector) != self.dim:
                return []
            sql = f"SELECT rowid, distance FROM vec WHERE {' AND '.join(conds)} ORDER BY distance"
            found = self._r.execute(sql, args).fetchall()
            if not found:
                return []
            marks = ",".join("?" * len(found))
            ids = dict(self._r.execute(f"SELECT rowid, id FROM items WHERE rowid IN ({marks})", [r for r, _ in found]))
        return [(r, ids[r]) for r, _ in found if r in ids]
