"""Retention and faults on real files: keyframes bounded by age and by bytes (oldest first, counted; rows stay
searchable), rows bounded by count; kill -9 of a process writing entries loses no committed row and the database
opens."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from livesight.ids import new_id
from livesight.timeline.store import TimelineStore
from livesight.types import Keyframe, TimelineEntry, TimelineQuery
from tests.timeline.conftest import close_store, jpeg, open_store

DAY = 86_400.0
NOW = 1_796_626_800.0


def add(store: TimelineStore, i: int, start: float, frames: int = 2, size: int = 0) -> TimelineEntry:
    e = TimelineEntry(
        id=new_id("tl_"), camera="door", scene=i, chunk=0, pts=float(i), wall_time=start, end_pts=i + 10.0,
        end_wall_time=start + 10, caption=f"scene {i} a parcel on the step",
        keyframes=tuple(Keyframe("first", float(i), start) for _ in range(frames)),
    )  # fmt: skip
    data = jpeg(i % 250) + b"\0" * size  # a JPEG padded after its end marker (the size is what is bounded)
    store.add_entry(e, [data] * frames)
    return e


def files(store: TimelineStore) -> set[str]:
    assert store.dir is not None
    return {p.name for p in store.dir.glob("*/*.jpg")}


def test_keyframes_older_than_retention_days_go_first(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ev.sqlite", retention_days=7)
    try:
        old = [add(store, i, NOW - (10 - i) * DAY) for i in range(3)]  # 10, 9, 8 days old
        new = [add(store, 10 + i, NOW - i * DAY) for i in range(3)]
        store.flush()
        assert store.retention is not None
        assert store.retention.run_once(NOW) == {"keyframes": 6, "rows": 0}
        assert files(store) == {f"{e.id}-{i}.jpg" for e in new for i in (0, 1)}
        gone = store.get(old[0].id)
        assert gone is not None and gone.keyframes == () and gone.caption == "scene 0 a parcel on the step"
        assert store.keyframe_bytes(old[0].id, 0) is None and store.keyframe_bytes(new[0].id, 0) is not None
        assert len(store.search(TimelineQuery(text="parcel", limit=10)).hits) == 6  # text rows stay
        assert store.counters()["keyframes_deleted"] == 6
        assert store.retention.run_once(NOW) == {"keyframes": 0, "rows": 0}
    finally:
        close_store(store)


def test_keyframe_bytes_are_bounded_oldest_first(tmp_path: Path) -> None:
    mib = 1024 * 1024
    store = open_store(tmp_path / "ev.sqlite", max_bytes=mib)
    try:
        es = [add(store, i, NOW - 100 + i, frames=1, size=300_000) for i in range(6)]  # ~1.8 MB in all
        store.flush()
        assert store.retention is not None
        out = store.retention.run_once(NOW)
        kept = {e.id for e in es if store.keyframe_bytes(e.id, 0) is not None}
        assert kept == {e.id for e in es[-3:]} and out == {"keyframes": 3, "rows": 0}
        assert sum(p.stat().st_size for p in store.dir.glob("*/*.jpg")) <= mib  # type: ignore[union-attr]
    finally:
        close_store(store)


def test_rows_are_bounded_by_max_rows(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ev.sqlite", max_rows=100)
    try:
        es = [add(store, i, NOW - 1000 + i, frames=1) for i in range(130)]
        store.flush()
        assert store.retention is not None
        assert store.retention.run_once(NOW) == {"keyframes": 30, "rows": 30}
        assert store.get(es[29].id) is None and store.get(es[30].id) is not None
        assert len(files(store)) == 100 and store.counters()["rows_deleted"] == 30
        assert [h.entry.id for h in store.search(TimelineQuery(text="scene 5", limit=500)).hits].count(es[5].id) == 0
    finally:
        close_store(store)


WRITER = """
import sys, time
from pathlib import Path
from livesight.config import TimelineConfig
from livesight.ids import new_id
from livesight.memory.event_log import EventLog
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.types import Keyframe, TimelineEntry
db = sys.argv[1]
store = TimelineStore(EventLog(db), keyframe_dir(db), TimelineConfig())
store.open()
jpg = Path(sys.argv[2]).read_bytes()
i = 0
while True:
    ids = []
    for _ in range(20):
        i += 1
        e = TimelineEntry(id=new_id("tl_"), camera="door", scene=i, chunk=0, pts=float(i), wall_time=1.7e9 + i,
                          end_pts=i + 1.0, end_wall_time=1.7e9 + i + 1, caption=f"entry {i}",
                          keyframes=(Keyframe("first", float(i), 1.7e9 + i),))
        store.add_entry(e, [jpg])
        ids.append(e.id)
    store.flush()
    print(" ".join(ids), flush=True)  # these are committed
"""


def test_kill_9_while_writing_entries_loses_no_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite"
    (tmp_path / "k.jpg").write_bytes(jpeg(77))
    committed: list[str] = []
    cmd = [sys.executable, "-c", WRITER, str(db), str(tmp_path / "k.jpg")]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        while len(committed) < 400:
            line = proc.stdout.readline()
            assert line, "the writer died"
            committed += line.split()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    store = open_store(db)  # opens (WAL recovery)
    try:
        for entry_id in committed:
            e = store.get(entry_id)
            assert e is not None and store.keyframe_bytes(entry_id, 0) == jpeg(77), entry_id
        hits = store.search(TimelineQuery(text=f"entry {len(committed)}", limit=5)).hits
        assert any(h.entry.id == committed[-1] for h in hits)
        conn = store._conn()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert json.loads(conn.execute("SELECT keyframes FROM timeline LIMIT 1").fetchone()[0])[0]["role"] == "first"
    finally:
        close_store(store)
