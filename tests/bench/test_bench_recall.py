from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from livesight.bench.recall import oracle
from livesight.bench.recall.palette import Thing
from livesight.bench.recall.questions import build_questions
from livesight.bench.recall.stream import EPOCH, TIMEZONE, CameraPainter, Event, World, plan_world
from livesight.imaging import encode_jpeg
from livesight.timeline.when import parse_window
from tests.bench.run import bench_quick


def test_the_world_plants_its_hard_cases_and_enough_events() -> None:
    w = plan_world(7200.0)
    assert len(w.events) >= 50
    assert {e.hard for e in w.events} >= {"first minute", "last minute", "close pair", "long still", "fade to black"}
    for e in w.events:
        assert 5.0 <= e.end - e.start <= 30.0 and 0.0 <= e.start < e.end <= w.duration_s
    for cam in w.cameras:  # one thing at a time on a camera
        spans = sorted((e.start, e.end) for e in w.events if e.camera == cam)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def test_the_oracle_reads_every_thing_back_from_a_stored_jpeg() -> None:
    things = [Thing("van", "red"), Thing("person", "green"), Thing("ball", "yellow"), Thing("box", "blue")]
    things += [Thing("card", word="CLOSED"), Thing("card", word="DELIVERY"), Thing("box", "pink")]
    events = tuple(Event(f"e{i}", "gate", 10.0 * i, 10.0 * i + 8, t, 200.0, 120.0, 0.0) for i, t in enumerate(things))
    painter = CameraPainter(World(100.0, events), "gate")
    for e in events:
        jpeg = encode_jpeg(painter.full(e.start + 4), 80, max_side=640)
        assert oracle.see(jpeg) == [e.thing.label]
        assert e.thing.label in oracle.caption([jpeg], "the gate")
    empty = encode_jpeg(painter.full(95.0), 80)
    assert oracle.see(empty) == [] and "empty" in oracle.caption([empty], "the gate")


def test_half_the_questions_carry_a_time_that_when_py_reads_around_their_event() -> None:
    w = plan_world(7200.0)
    now = EPOCH + w.duration_s
    qs = build_questions(w, now)
    events = {e.id: e for e in w.events}
    timed = [q for q in qs if q.timed]
    assert len(qs) >= 50 and len(timed) >= len(qs) // 2 and len(qs) - len(timed) >= 20
    for q in timed:
        win = parse_window(q.text, now, TIMEZONE)
        assert win is not None, q.text
        e = events[q.event]
        assert win.start <= EPOCH + e.end and win.end >= EPOCH + e.start, (q.text, win)
    assert dt.datetime.fromtimestamp(EPOCH, dt.UTC).hour == 9  # "this morning" covers the stream


@pytest.mark.slow
def test_bench_recall_quick(tmp_path: Path) -> None:
    data = bench_quick("recall", tmp_path, timeout=300)
    figures = {row["figure"] for row in data["summary"]}
    assert any(f.startswith("recall@5") for f in figures) and any(f.startswith("TTFT") for f in figures)
    assert set(data["tables"]) >= {"Recall by question kind", "Hard cases", "Keyframe bytes per camera-day"}
    assert len(data["answers"]) == len(data["stream"]["events"]) >= 6
    # planted events are found: those capture's keyframes show are retrieved, and every hard case is reported
    assert data["coverage"]["shown"] >= 2 and data["retrieval_only"]["recall@5"] >= 0.5
    assert sum(a["seen@5"] for a in data["answers"]) >= 2
    cases = {row["case"] for row in data["tables"]["Hard cases"]}
    assert cases >= {"first minute", "last minute", "close pair", "fade to black"}
    assert all("why" in row for row in data["coverage"]["rows"] if not row["seen"])
    assert data["keyframes"]["max_mb_per_camera_day"] > 0 and data["keyframes"]["disk_bytes"] > 0
    # every entry written with its keyframes, none deleted (retention runs on the stream's clock)
    assert data["store_counters"]["keyframes_deleted"] == 0 and data["stream"]["capture"]["entries_lost"] == 0
    assert data["stream"]["capture"]["entries_without_keyframes"] == 0
    assert [r["ratio_with_recall"] > 0 for r in data["ttft"]["rows"]] == [True] * len(data["ttft"]["rows"])
    assert (tmp_path / "recall.png").is_file() and (tmp_path / "recall.md").is_file()
