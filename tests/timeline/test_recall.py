"""Recall on a real timeline: entries written through the store (SQLite file, JPEG files), questions → the entries,
lines, keyframes and citations an answer gets."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from livesight.config import RecallConfig
from livesight.ids import new_id
from livesight.timeline.recall import Recaller, content_words
from livesight.timeline.store import TimelineStore
from livesight.types import Keyframe, TimelineEntry, keyframe_url
from tests.timeline.conftest import jpeg

ZONE = "Asia/Kolkata"  # UTC+05:30, no DST
NOW = dt.datetime(2026, 3, 4, 15, 30, tzinfo=zoneinfo.ZoneInfo(ZONE)).timestamp()


def add(
    store: TimelineStore, start: float, end: float | None, caption: str | None, *, camera: str = "gate", scene: int = 1
) -> TimelineEntry:
    kfs = (Keyframe("first", start, start), Keyframe("action", start + 5, start + 5), Keyframe("last", start, start))
    entry = TimelineEntry(new_id("tl"), camera, scene, 0, start - 1000, start, None, end, caption, kfs)
    if end is not None:
        entry = TimelineEntry(new_id("tl"), camera, scene, 0, start - 1000, start, end - 1000, end, caption, kfs)
    store.add_entry(entry, [jpeg(10), jpeg(120), jpeg(240)])
    return entry


def recaller(store: TimelineStore, **cfg: object) -> Recaller:
    return Recaller(store, RecallConfig(timezone=ZONE, **cfg))  # type: ignore[arg-type]


def test_a_time_expression_recalls_the_entries_of_its_window(store: TimelineStore) -> None:
    add(store, NOW - 3600, NOW - 3500, "a cat crosses the lawn", scene=1)
    van = add(store, NOW - 700, NOW - 500, "a red van stops at the gate", scene=2)
    add(store, NOW - 500, NOW - 100, "the gate is empty", scene=3)  # still in the live window
    add(store, NOW - 700, NOW - 500, "a bus", camera="door", scene=2)  # another camera
    store.flush()
    r = recaller(store).recall("What happened 10 minutes ago?", camera="gate", now=NOW, live_start=NOW - 300)
    assert r.window is not None and r.window.phrase == "10 minutes ago"
    assert r.lines == ("[15:18:20–15:21:40] a red van stops at the gate",)  # local time in the zone
    assert [c.id for c in r.citations] == [van.id]
    c = r.citations[0]
    assert (c.camera, c.scene, c.pts, c.wall_time) == ("gate", 2, van.pts, van.wall_time)
    assert c.thumbnail == keyframe_url(van.id, 0)
    # one keyframe per entry (memory.recall.keyframes_per_scene): the action one, after its time as text
    assert [(i.label, i.jpeg) for i in r.images] == [("Keyframe at 15:18:25:", jpeg(120))]
    seg = r.segment()
    assert seg is not None and "a red van stops at the gate" in seg.text and seg.images[0].jpeg == jpeg(120)


def test_words_find_entries_at_any_time_but_not_what_is_still_in_view(store: TimelineStore) -> None:
    add(store, NOW - 20 * 3600, NOW - 20 * 3600 + 90, "a red van arrives at the gate", scene=1)
    add(store, NOW - 2 * 3600, NOW - 2 * 3600 + 60, "a cyclist rides past", scene=2)
    add(store, NOW - 200, NOW - 10, "a red van leaves", scene=3)  # ended inside the live window: in view
    store.flush()
    r = recaller(store).recall("When did the red van come?", camera="gate", now=NOW, live_start=NOW - 300)
    assert r.window is None
    assert r.lines == ("[2026-03-03 19:30:00–19:31:30] a red van arrives at the gate",)  # another day: its date
    assert len(r.citations) == 1


def test_questions_about_now_or_without_match_recall_nothing(store: TimelineStore) -> None:
    add(store, NOW - 3600, NOW - 3500, "a red van at the gate", scene=1)
    store.flush()
    rc = recaller(store)
    for q in ("What do you see now?", "Is there a red van right now?", "Is the door open?", "describe it"):
        r = rc.recall(q, camera="gate", now=NOW, live_start=NOW - 300)
        assert r.empty and r.citations == () and r.images == () and r.segment() is None, q
    assert rc.recall("any things?", camera="gate", now=NOW).empty  # only the search's stop words left
    assert recaller(store, enabled=False).recall("a red van yesterday", camera="gate", now=NOW).empty


def test_a_window_without_matching_words_lists_its_newest_entries(store: TimelineStore) -> None:
    morning = dt.datetime(2026, 3, 4, 6, 0, tzinfo=zoneinfo.ZoneInfo(ZONE)).timestamp()
    made = [add(store, morning + 600 * i, morning + 600 * i + 120, f"scene number {i}", scene=i) for i in range(6)]
    add(store, NOW - 2 * 86400, NOW - 2 * 86400 + 60, "a giraffe", scene=9)  # matches, but outside the window
    store.flush()
    r = recaller(store).recall("any giraffe this morning?", camera="gate", now=NOW, live_start=NOW - 300)
    assert r.window is not None and r.window.phrase == "this morning"
    assert [c.id for c in r.citations] == [e.id for e in made[2:]]  # the newest 4 (max_scenes), oldest first
    assert r.lines[0].startswith("[06:20:00–06:22:00] scene number 2")


def test_recall_fits_the_prompt_budget_images_first_then_the_oldest_lines(store: TimelineStore) -> None:
    for i in range(3):
        add(store, NOW - 3000 + 600 * i, NOW - 2900 + 600 * i, f"a red van, visit {i}", scene=i)
    store.flush()
    r = recaller(store, keyframes_per_scene=2).recall("the red van", camera="gate", now=NOW, live_start=NOW - 300)
    assert len(r.lines) == 3 and len(r.images) == 6
    same = r.fit(100_000, lambda _i: 300)
    assert same is r
    no_images = r.fit(200, lambda _i: 300)
    assert no_images.images == () and no_images.lines == r.lines and no_images.citations == r.citations
    tight = r.fit(40, lambda _i: 300)  # room for the intro and one line: the newest stays
    assert tight.lines == r.lines[-1:] and tight.citations == r.citations[-1:]
    assert r.fit(0, lambda _i: 300).empty


def test_a_keyframe_deleted_meanwhile_keeps_its_line(store: TimelineStore) -> None:
    van = add(store, NOW - 700, NOW - 500, "a red van", scene=2)
    store.flush()
    store.keyframe_path("gate", van.id, 1).unlink()
    r = recaller(store).recall("the red van 10 minutes ago", camera="gate", now=NOW, live_start=NOW - 300)
    assert len(r.lines) == 1 and r.images == () and r.citations[0].thumbnail == keyframe_url(van.id, 0)


def test_content_words() -> None:
    assert content_words("When did the red van come, 10 minutes ago?") == ["red", "van"]
    assert content_words("What happened this morning?") == []
