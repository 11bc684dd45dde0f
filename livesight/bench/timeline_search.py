"""Timeline search at scale: fill a real SQLite timeline with N synthetic entries (3 cameras over months, captions
from a realistic vocabulary with common and rare words), then time typical queries through TimelineStore.search.

    from livesight.bench.timeline_search import run
    run(1_000_000)   # → {"rows": ..., "fill_s": ..., "queries": {kind: {"p50_ms", "p95_ms", "hits"}}}

The fill writes the rows in one transaction with executemany and builds the FTS5 index once afterwards ('rebuild'),
which is what makes a million rows take about a minute instead of an hour of per-row triggers.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from livesight.config import TimelineConfig
from livesight.ids import new_id
from livesight.memory.event_log import TIMELINE_SCHEMA, EventLog
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.types import TimelineQuery

CAMERAS = ("door", "yard", "street")
T_START = 1_760_000_000.0
MEAN_S = 60.0  # mean entry length: 1M rows over 3 cameras ≈ 230 days
COMMON = ["person", "car", "walks", "parked", "white", "door", "street", "shadow", "light", "tree", "road"]
MIDDLE = ["dog", "bicycle", "van", "truck", "cat", "package", "umbrella", "child", "bus", "rain", "snow", "ladder"]
RARE = ["giraffe", "forklift", "balloon", "drone", "ambulance", "horse", "kayak", "piano"]
COLORS = ["red", "blue", "black", "grey", "green", "yellow", "silver", "brown"]
VERBS = ["crosses", "stops near", "waits by", "moves past", "stands at", "leaves", "arrives at", "turns at"]
PLACES = ["the gate", "the porch", "the driveway", "the sidewalk", "the lawn", "the corner", "the fence"]


def caption(rng: random.Random) -> str:
    words = [rng.choice(COMMON) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        words.append(rng.choice(MIDDLE))
    if rng.random() < 0.0005:
        words.append(rng.choice(RARE))
    return f"a {rng.choice(COLORS)} {' '.join(words)} {rng.choice(VERBS)} {rng.choice(PLACES)}"


def fill(db: Path, rows: int, *, seed: int = 31) -> float:
    """Write `rows` synthetic entries into a new timeline database at `db`; returns the seconds it took."""
    t0 = time.perf_counter()
    EventLog(db).close()  # the schema
    rng = random.Random(seed)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for trig in ("timeline_ai", "timeline_span"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
    clock = dict.fromkeys(CAMERAS, T_START)
    scene = dict.fromkeys(CAMERAS, 0)
    max_span = 0.0

    def gen() -> Any:
        nonlocal max_span
        for _ in range(rows):
            cam = rng.choice(CAMERAS)
            start = clock[cam]
            span = min(rng.expovariate(1 / MEAN_S) + 2.0, 300.0)
            clock[cam] = start + span
            scene[cam] += 1
            max_span = max(max_span, span)
            cap = caption(rng)
            answers = f"is anyone there? | {cap}" if rng.random() < 0.02 else ""
            watches = "a person at the door?" if rng.random() < 0.01 else ""
            yield (new_id("tl_"), cam, scene[cam], start - T_START, start, start + span - T_START, start + span, cap,
                   answers, watches)  # fmt: skip

    with conn:
        conn.executemany(
            "INSERT INTO timeline (id, camera, scene, chunk, pts, wall_time, end_pts, end_wall_time, caption,"
            " caption_state, answers, watches) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, 'done', ?, ?)",
            gen(),
        )
        conn.execute("INSERT INTO timeline_fts (timeline_fts) VALUES ('rebuild')")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'timeline_max_span'", (str(max_span),))
    conn.executescript(TIMELINE_SCHEMA)  # the triggers again
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - t0


def queries(end: float, rng: random.Random) -> dict[str, Any]:
    """Query kind → a function of the repeat index giving a TimelineQuery (windows moved about the history)."""
    span = end - T_START
    day = 86_400.0

    def at(i: int, width: float) -> tuple[float, float]:
        s = T_START + rng.random() * (span - width)
        return s, s + width

    return {
        "rare_word": lambda i: TimelineQuery(text="was there a giraffe?"),
        "middle_word": lambda i: TimelineQuery(text="a ladder"),
        "common_word": lambda i: TimelineQuery(text="person"),
        "common_words": lambda i: TimelineQuery(text="white car parked on the street"),
        "common_word_day": lambda i: TimelineQuery(text="person", start=(w := at(i, day))[0], end=w[1]),
        "rare_word_week": lambda i: TimelineQuery(text="forklift", start=(w := at(i, 7 * day))[0], end=w[1]),
        "common_word_camera_day": lambda i: TimelineQuery(
            text="car", cameras=("yard",), start=(w := at(i, day))[0], end=w[1]
        ),
        "list_newest": lambda i: TimelineQuery(limit=20),
        "list_day": lambda i: TimelineQuery(start=(w := at(i, day))[0], end=w[1], limit=20),
        "list_camera_day": lambda i: TimelineQuery(cameras=("door",), start=(w := at(i, day))[0], end=w[1]),
        "list_two_cameras": lambda i: TimelineQuery(cameras=("door", "street"), limit=50),
    }


def run(rows: int = 1_000_000, *, repeats: int = 40, db: Path | None = None) -> dict[str, Any]:
    """Fill (unless `db` already holds a filled timeline) and time each query kind `repeats` times (plus a second
    page through the cursor for each); p50/p95 in milliseconds."""
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="livesight-timeline-bench-")
        db = Path(tmp.name) / "timeline.sqlite"
    try:
        fill_s = fill(db, rows) if not db.exists() else 0.0
        log = EventLog(db, timeline=False)
        store = TimelineStore(log, keyframe_dir(str(db)), TimelineConfig())
        store.open()
        try:
            (n, end) = store._conn().execute("SELECT count(*), max(end_wall_time) FROM timeline").fetchone()
            out: dict[str, Any] = {"rows": n, "fill_s": round(fill_s, 1), "queries": {}}
            rng = random.Random(7)
            for kind, make in queries(end, rng).items():
                times, hits = [], 0
                for i in range(repeats):
                    q = make(i)
                    t = time.perf_counter()
                    page = store.search(q)
                    times.append((time.perf_counter() - t) * 1000)
                    hits += len(page.hits)
                    if i == 0 and page.next_cursor:
                        q2 = TimelineQuery(q.text, q.cameras, q.start, q.end, q.limit, page.next_cursor)
                        t = time.perf_counter()
                        store.search(q2)
                        times.append((time.perf_counter() - t) * 1000)
                times.sort()
                out["queries"][kind] = {
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
                    "hits_per_query": round(hits / repeats, 1),
                }
            out["p95_ms_worst"] = max(q["p95_ms"] for q in out["queries"].values())
            return out
        finally:
            store.close()
            log.close()
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":  # python -m livesight.bench.timeline_search [rows] [db]
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(run(n, db=path), indent=2))
