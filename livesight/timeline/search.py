"""Search over the timeline (docs/timeline.md): a TimelineQuery → a TimelinePage, on a read connection.

- **With text**: SQLite FTS5 finds the entries whose caption, answers or watches hold any content word; they are
  ranked by BM25 (FTS5's formula, ranking.py, with cached corpus statistics; `rank` is higher-is-better), best
  first, ties newest first. The user's words never reach MATCH raw: `search_terms` keeps the content words (stop
  words dropped) and `fts_query` quotes each one and ORs them. Bounded work: the newest `MAX_CANDIDATES` matching
  entries (after the camera and time filters) are ranked, so a word found in a third of a million rows costs about
  what a rare one does. The trade-off: past that many matches, older matches are reachable with a time window
  (`start`/`end`) rather than by rank alone.
- **Without text**: newest first (wall_time, then row).
- **Filters**: cameras; `start`/`end` keep the entries that overlap the window (an open entry runs until now).
  The window is turned into a row range through the `wall_time` index (entries are at most `timeline_max_span`
  long, kept in `meta` by a trigger), so FTS only walks the matches inside it.
- **Semantic** (optional, `memory.timeline.embeddings`): the store passes `neighbours`, the entries whose caption
  vectors are nearest the query's (semantic/), coarsely filtered by camera and start time (`start_bounds`) in the
  sidecar, found before the read connection is taken (a brute-force scan: the slow part); they are
  checked here against the same filters as BM25's candidates and the two lists are fused by reciprocal rank (`rrf`,
  k = 60): `rank` is then the fused score (higher is better).
- **Cursors**: opaque, signed with the database's own key (HMAC; a changed or foreign cursor is an error), bound
  to the query they came from, and stable: rows written after the first page never shift later pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from livesight.timeline.ranking import SMALL_ROWS, CorpusStats, score, tokens
from livesight.timeline.rows import COLUMNS, entry_from_row
from livesight.types import TimelineEntry, TimelineHit, TimelinePage, TimelineQuery

MAX_TERMS = 16
MAX_CANDIDATES = 1000  # entries ranked per text query at most (see the module docstring)
MAX_LIMIT = 500
WEIGHTS = (1.0, 0.6, 1.0)  # bm25 column weights: caption, answers, watches
RRF_K = 60

STOP_WORDS = frozenset(  # English function words and the verbs of asking: they find everything
    """a about above after again against all am an and any are around as at be because been before being below
    between both but by can could did do does doing down during each else ever few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
    no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your yours yourself yourselves
    anything something happen happened happening see saw seen show shown tell told look looked thing things
    get got go went let us please ago earlier recently""".split()  # noqa: SIM905 - a readable word list
)


def search_terms(text: str) -> list[str]:
    """The content words of a user's text, as the index has them (lower case, diacritics folded; stop words and
    single letters dropped; at most MAX_TERMS). Raises ValueError when nothing is left to search for."""
    terms = [w for w in dict.fromkeys(tokens(text)) if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]
    if not terms:
        raise ValueError("q has no word to search for (only stop words, single letters or punctuation)")
    return terms[:MAX_TERMS]


def fts_query(terms: list[str] | str) -> str:
    """A safe FTS5 query: every term quoted (a quote inside doubled), OR'ed. Never the user's text raw."""
    if isinstance(terms, str):
        terms = search_terms(terms)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


# ---- cursors --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    hi: int  # the newest row the first page saw: later rows are not part of this listing
    offset: int = 0  # text mode: hits already given
    wall_time: float | None = None  # list mode: the last hit given (wall_time, row)
    row: int | None = None


def _fingerprint(q: TimelineQuery) -> str:
    cams = sorted(q.cameras) if q.cameras is not None else None
    return hashlib.sha256(repr((q.text, cams, q.start, q.end)).encode()).hexdigest()[:16]


def encode_cursor(c: Cursor, q: TimelineQuery, key: bytes) -> str:
    body = json.dumps({"h": c.hi, "o": c.offset, "w": c.wall_time, "r": c.row, "f": _fingerprint(q)}).encode()
    b = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    return b + "." + hmac.new(key, b.encode(), hashlib.sha256).hexdigest()[:24]


def decode_cursor(text: str, q: TimelineQuery, key: bytes) -> Cursor:
    """Raises ValueError for a cursor this database did not make, or one made for another query."""
    b, _, sig = text.partition(".")
    good = hmac.new(key, b.encode(), hashlib.sha256).hexdigest()[:24]
    if not sig or not hmac.compare_digest(sig.encode(), good.encode()):
        raise ValueError("cursor is not valid (changed, or from another server)")
    try:
        d = json.loads(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)))
        c = Cursor(int(d["h"]), int(d["o"]), None if d["w"] is None else float(d["w"]), d["r"])
        fp = d["f"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("cursor is not valid") from None
    if fp != _fingerprint(q):
        raise ValueError("cursor belongs to another query (same q, camera, from and to are needed)")
    return c


# ---- queries --------------------------------------------------------------------------------------------------


def start_bounds(
    conn: sqlite3.Connection, start: float | None, end: float | None, *, newest: int | None = None
) -> tuple[float | None, float | None]:
    """The range of start times (wall_time) an entry overlapping [start, end] can have (None: unbounded); `newest`:
    narrowed to the newest `newest` entries of that range (a bound on the work, as MAX_CANDIDATES is for BM25)."""
    _, _, (lo, hi) = _window(conn, start, end)
    if newest is not None:
        row = conn.execute(
            "SELECT wall_time FROM timeline INDEXED BY timeline_time WHERE wall_time <= ?"
            " ORDER BY wall_time DESC LIMIT 1 OFFSET ?",
            (1e300 if hi is None else hi, newest - 1),
        ).fetchone()
        if row is not None:
            lo = row[0] if lo is None else max(lo, row[0])
    return lo, hi


def _lowest_start(conn: sqlite3.Connection, start: float) -> float:
    """The earliest wall_time an entry overlapping `start` can have: entries are at most `timeline_max_span` long
    (kept in meta by a trigger); an open one (few: one per camera) reaches to now."""
    span = conn.execute("SELECT CAST(value AS REAL) FROM meta WHERE key = 'timeline_max_span'").fetchone()
    lo = start - float(span[0] if span else 0.0) - 1.0
    (oldest_open,) = conn.execute(
        "SELECT min(wall_time) FROM timeline INDEXED BY timeline_open WHERE end_wall_time IS NULL"
    ).fetchone()
    return lo if oldest_open is None else min(lo, float(oldest_open))


def _window(conn: sqlite3.Connection, start: float | None, end: float | None) -> tuple[str, list[Any], list[Any]]:
    """SQL conditions (on `t`) for entries overlapping [start, end], bounded below for the wall_time index; and
    the bounds [lo, hi] of wall_time alone (None: unbounded)."""
    conds: list[str] = []
    args: list[Any] = []
    bounds: list[Any] = [None, end]
    if end is not None:
        conds.append("t.wall_time <= ?")
        args.append(end)
    if start is not None:
        lo = _lowest_start(conn, start)
        bounds[0] = lo
        conds.append("t.wall_time >= ? AND (t.end_wall_time >= ? OR t.end_wall_time IS NULL)")
        args += [lo, start]
    return " AND ".join(conds), args, bounds


def rrf(lists: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each row scores the sum of 1 / (k + its rank) over the lists holding it (ranks from
    1); best first, ties newest (highest row) first."""
    fused: dict[int, float] = {}
    for ranked in lists:
        for i, row in enumerate(ranked, 1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (k + i)
    return sorted(fused.items(), key=lambda r: (-r[1], -r[0]))


def search(
    conn: sqlite3.Connection,
    q: TimelineQuery,
    key: bytes,
    stats: CorpusStats,
    neighbours: list[tuple[int, str]] | None = None,
) -> TimelinePage:
    """Raises ValueError (with the reason) for a bad query. `neighbours`: semantic search is on, the (rowid, entry id)
    of the entries nearest the text by meaning, nearest first (module docstring)."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    if q.start is not None and q.end is not None and q.start > q.end:
        raise ValueError("from is after to")
    terms = search_terms(q.text) if q.text is not None else None
    cursor = decode_cursor(q.cursor, q, key) if q.cursor else None
    if q.cameras is not None and not q.cameras:
        return TimelinePage(())
    if cursor is not None:
        hi = cursor.hi
    else:
        (hi,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM timeline").fetchone()
    if terms is None:
        return _listing(conn, q, key, hi, cursor)
    return _ranked(conn, q, key, terms, stats, hi, cursor, neighbours)


def _listing(conn: sqlite3.Connection, q: TimelineQuery, key: bytes, hi: int, cur: Cursor | None) -> TimelinePage:
    where, args, _ = _window(conn, q.start, q.end)
    conds = ["t.rowid <= ?", *([where] if where else [])]
    base_args: list[Any] = [hi, *args]
    if cur is not None and cur.wall_time is not None and cur.row is not None:
        conds.append("(t.wall_time, t.rowid) < (?, ?)")
        base_args += [cur.wall_time, cur.row]
    rows: list[Any] = []
    for cam in q.cameras if q.cameras is not None else (None,):  # one index walk per camera, merged
        c = [*conds, "t.camera = ?"] if cam is not None else conds
        a = [*base_args, cam] if cam is not None else base_args
        sql = f"SELECT {COLUMNS} FROM timeline t WHERE {' AND '.join(c)} ORDER BY t.wall_time DESC, t.rowid DESC"
        rows += conn.execute(sql + " LIMIT ?", (*a, q.limit + 1)).fetchall()
    rows.sort(key=lambda r: (r[6], r[0]), reverse=True)
    page = rows[: q.limit]
    nxt = None
    if len(rows) > q.limit:
        last = page[-1]
        nxt = encode_cursor(Cursor(hi, wall_time=last[6], row=last[0]), q, key)
    return TimelinePage(tuple(TimelineHit(entry_from_row(r)) for r in page), nxt)


def _ranked(
    conn: sqlite3.Connection,
    q: TimelineQuery,
    key: bytes,
    terms: list[str],
    stats: CorpusStats,
    hi: int,
    cur: Cursor | None,
    neighbours: list[tuple[int, str]] | None = None,
) -> TimelinePage:
    where, args, (lo, up) = _window(conn, q.start, q.end)
    conds = ["timeline_fts MATCH ?", "timeline_fts.rowid BETWEEN ? AND ?"]  # one range: FTS5 uses one bound each
    qargs: list[Any] = [fts_query(terms), 0, hi]
    if where:  # the window as a range of rows (index only: wall_time's index holds the rowid)
        lo_hi = conn.execute(
            "SELECT min(rowid), max(rowid) FROM timeline INDEXED BY timeline_time WHERE wall_time BETWEEN ? AND ?",
            (-1e300 if lo is None else lo, 1e300 if up is None else up),
        ).fetchone()
        if lo_hi[0] is None:
            return TimelinePage(())
        qargs[1:3] = [lo_hi[0], min(hi, lo_hi[1])]
        conds.append(where)
        qargs += args
    cams = ""
    if q.cameras is not None:
        cams = f"t.camera IN ({','.join('?' * len(q.cameras))})"
        conds.append(cams)
        qargs += list(q.cameras)
    sql = (
        "SELECT timeline_fts.rowid, t.caption, t.answers, t.watches FROM timeline_fts JOIN timeline t"
        f" ON t.rowid = timeline_fts.rowid WHERE {' AND '.join(conds)} ORDER BY timeline_fts.rowid DESC LIMIT ?"
    )
    rows = conn.execute(sql, (*qargs, MAX_CANDIDATES)).fetchall()
    n, avgdl = stats.corpus(conn)
    df = stats.df(conn, terms, fresh=n < SMALL_ROWS)
    n = max(n, *df.values())  # never fewer rows than hold a word
    cands = [(r[0], score(terms, r[1:], WEIGHTS, df, n, avgdl)) for r in rows]
    cands.sort(key=lambda r: (-r[1], -r[0]))
    if neighbours is not None:
        near = _checked(conn, neighbours, hi, where, args, cams, q.cameras)
        cands = rrf([[c[0] for c in cands], near])
    off = cur.offset if cur is not None else 0
    chosen = cands[off : off + q.limit]
    by_row: dict[int, Any] = {}
    if chosen:
        marks = ",".join("?" * len(chosen))
        for r in conn.execute(f"SELECT {COLUMNS} FROM timeline t WHERE t.rowid IN ({marks})", [c[0] for c in chosen]):
            by_row[r[0]] = r
    hits = tuple(TimelineHit(entry_from_row(by_row[c[0]]), float(f"{c[1]:.6g}")) for c in chosen if c[0] in by_row)
    nxt = encode_cursor(Cursor(hi, offset=off + q.limit), q, key) if len(cands) > off + q.limit else None
    return TimelinePage(hits, nxt)


def _checked(
    conn: sqlite3.Connection,
    near: list[tuple[int, str]],
    hi: int,
    where: str,
    args: list[Any],
    cams: str,
    cameras: Sequence[str] | None,
) -> list[int]:
    """The neighbours that are still the entries they were embedded for and pass the query's filters, in order."""
    if not near:
        return []
    conds = [f"t.rowid IN ({','.join('?' * len(near))})", "t.rowid <= ?", *(c for c in (where, cams) if c)]
    sql = f"SELECT t.rowid, t.id FROM timeline t WHERE {' AND '.join(conds)}"
    alive = dict(conn.execute(sql, [*(r for r, _ in near), hi, *args, *(cameras or ())]).fetchall())
    return [r for r, entry_id in near if alive.get(r) == entry_id]


def between(conn: sqlite3.Connection, camera: str | None, start: float, end: float, limit: int) -> list[TimelineEntry]:
    """Entries overlapping [start, end], oldest first."""
    where, args, _ = _window(conn, start, end)
    if camera is not None:
        where += " AND t.camera = ?"
        args.append(camera)
    sql = f"SELECT {COLUMNS} FROM timeline t WHERE {where} ORDER BY t.wall_time, t.rowid LIMIT ?"
    return [entry_from_row(r) for r in conn.execute(sql, (*args, limit)).fetchall()]
