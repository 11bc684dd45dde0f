"""A database written by the previous code (schema 1: its exact SQL below, rows included) opens with the timeline
code and migrates in place: its scenes become timeline entries (end = the next scene's start), captions kept, the
answers and watches during each filled in, today's thumbnail files adopted as keyframe 0."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from livesight.errors import ConfigError
from livesight.memory.event_log import SCHEMA_VERSION, EventLog
from livesight.types import SceneChange, TimelineQuery
from tests.timeline.conftest import close_store, jpeg, open_store

# memory/event_log.py's SCHEMA at schema version 1, verbatim
SCHEMA_1 = """
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
T0 = 1_780_000_000.0


def write_v1(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        conn.executescript(SCHEMA_1)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        scenes = [
            ("door", 1, 0.0, T0, 1.0, "an empty porch"),
            ("door", 2, 40.0, T0 + 40, 3.0, "a courier leaves a parcel"),
            ("door", 3, 95.0, T0 + 95, 2.0, None),
            ("yard", 1, 0.0, T0 + 10, 1.0, "a lawn mower in the yard"),
        ]
        conn.executemany(
            "INSERT OR REPLACE INTO scenes (camera, scene, pts, wall_time, score, caption) VALUES (?, ?, ?, ?, ?, ?)",
            scenes,
        )
        conn.executemany(
            "INSERT INTO responses (response_id, camera, kind, scene, question, answer, ttft_ms, wall_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("r1", "door", "query", None, "who is at the door?", "a courier in a yellow jacket", 20.0, T0 + 50),
                ("r2", "door", "watch", None, "a parcel on the mat? Answer yes or no.", "yes", 15.0, T0 + 60),
                ("r3", "yard", "query", None, "is it raining?", "no", 15.0, T0 + 60),
            ],
        )
        conn.execute(
            "INSERT INTO camera_states (camera, state, reason, wall_time) VALUES ('door', 'live', '', ?)", (T0,)
        )
    conn.close()
    thumbs = db.with_name(db.stem + ".thumbnails")
    for camera, scene, value in (("door", 1, 30), ("door", 2, 200)):  # door 3 and yard 1 have none
        (thumbs / camera).mkdir(parents=True, exist_ok=True)
        (thumbs / camera / f"{scene}.jpg").write_bytes(jpeg(value))


def test_a_schema_1_database_migrates_in_place(tmp_path: Path) -> None:
    db = tmp_path / "ev.sqlite"
    write_v1(db)
    store = open_store(db)
    try:
        log = store.log
        assert log.rows("camera_states")[0]["state"] == "live" and len(log.rows("responses")) == 3  # kept
        assert log.last_scene("door") == 3
        hits = store.search(TimelineQuery(cameras=("door",))).hits
        got = [(h.entry.scene, h.entry.pts, h.entry.end_pts, h.entry.end_wall_time, h.entry.caption) for h in hits]
        assert got == [
            (3, 95.0, None, None, None),  # the last scene stays open: the next one (after the restart) closes it
            (2, 40.0, 95.0, T0 + 95, "a courier leaves a parcel"),
            (1, 0.0, 40.0, T0 + 40, "an empty porch"),
        ]
        two = hits[1].entry
        assert two.answers == ("who is at the door? | a courier in a yellow jacket",)
        assert two.watches == ("a parcel on the mat?",) and two.caption_state == "done"
        assert hits[0].entry.caption_state == "pending"
        # thumbnails → keyframe 0 where present
        assert [len(h.entry.keyframes) for h in hits] == [0, 1, 1]
        assert two.keyframes[0].role == "first" and two.keyframes[0].wall_time == T0 + 40
        assert store.keyframe_bytes(two.id, 0) == jpeg(200)
        assert store.keyframe_bytes(hits[0].entry.id, 0) is None
        assert store.counters()["thumbnails_adopted"] == 2
        # searchable: caption, answer, watch
        assert [h.entry.scene for h in store.search(TimelineQuery(text="yellow jacket")).hits] == [2]
        assert [h.entry.camera for h in store.search(TimelineQuery(text="mower")).hits] == ["yard"]
        # the next scene after the restart closes the migrated open one; captions fill it
        log.scene(SceneChange("door", 4, 10.0, T0 + 500, 1.0))
        log.caption("door", 3, "rain on the steps")
        store.flush()
        three = store.get(hits[0].entry.id)
        assert three is not None and three.end_wall_time == T0 + 500 and three.caption == "rain on the steps"
        ver = log._read.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert int(ver) == SCHEMA_VERSION == 2
    finally:
        close_store(store)
    # opened again: nothing migrates twice
    store = open_store(db)
    try:
        assert len(store.search(TimelineQuery(cameras=("door",))).hits) == 4
        assert store.counters()["thumbnails_adopted"] == 0
    finally:
        close_store(store)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ev.sqlite"
    EventLog(db).close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99 is newer"):
        EventLog(db)
