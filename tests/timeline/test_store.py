"""The timeline store on a real SQLite file and real JPEG files: entries from scenes and from the capture, captions,
answers and watches filled in, keyframes on disk (a missing file is None), the caption backlog."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from livesight.ids import new_id
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.types import Keyframe, SceneChange, TimelineEntry, TimelineQuery
from tests.timeline.conftest import close_store, jpeg, open_store

T0 = 1_790_000_000.0


def entry(
    camera: str,
    scene: int,
    start: float,
    end: float | None,
    *,
    chunk: int = 0,
    frames: int = 0,
    caption: str | None = None,
) -> TimelineEntry:
    return TimelineEntry(
        id=new_id("tl_"),
        camera=camera,
        scene=scene,
        chunk=chunk,
        pts=start - T0,
        wall_time=start,
        end_pts=None if end is None else end - T0,
        end_wall_time=end,
        caption=caption,
        keyframes=tuple(Keyframe(("first", "action", "last")[i], start - T0 + i, start + i) for i in range(frames)),
    )


def test_keyframe_dir_is_beside_the_database(tmp_path: Path) -> None:
    assert keyframe_dir(str(tmp_path / "ev.sqlite")) == tmp_path / "ev.keyframes"
    assert keyframe_dir(None) is None and keyframe_dir(":memory:") is None


def test_every_scene_opens_an_entry_closed_by_the_next(store: TimelineStore) -> None:
    log = store.log
    log.scene(SceneChange("door", 1, 0.0, T0, 1.0))
    log.response(
        response_id="r1", camera="door", kind="query", question="is a van there?", answer="yes, a van", ttft_ms=1.0
    )
    log.response(
        response_id="r2",
        camera="door",
        kind="watch",
        question="a parcel? Answer yes or no.",
        answer="Yes.",
        ttft_ms=1.0,
    )
    log.response(
        response_id="r3", camera="door", kind="watch", question="a dog? Answer yes or no.", answer="No.", ttft_ms=1.0
    )
    log.scene(SceneChange("door", 2, 30.0, time.time() + 30, 1.0))
    log.caption("door", 1, "a delivery driver at the door")
    store.flush()
    hits = store.search(TimelineQuery()).hits
    assert [(h.entry.scene, h.entry.end_wall_time is None) for h in hits] == [(2, True), (1, False)]
    first = hits[1].entry
    assert first.caption == "a delivery driver at the door" and first.caption_state == "done"
    assert first.answers == ("is a van there? | yes, a van",) and first.watches == ("a parcel?",)
    assert first.end_pts == 30.0 and first.id.startswith("tl_")
    assert store.get(first.id) == first and store.get("tl_nope") is None


def test_add_entry_writes_keyframes_then_the_row(store: TimelineStore) -> None:
    store.log.scene(SceneChange("yard", 4, 0.0, T0, 1.0))
    store.log.caption("yard", 4, "an empty yard")
    e = entry("yard", 4, T0, T0 + 60, frames=3)
    store.add_entry(e, [jpeg(10), jpeg(120), jpeg(250)])
    store.flush()
    got = store.get(e.id)
    assert got is not None and got.keyframes == e.keyframes
    assert got.caption == "an empty yard"  # the scene's live caption, kept from the row it replaced
    assert [h.entry.id for h in store.search(TimelineQuery()).hits] == [e.id]  # the open scene row was replaced
    for i, v in enumerate((10, 120, 250)):
        data = store.keyframe_bytes(e.id, i)
        assert data == jpeg(v) and (store.dir / "yard" / f"{e.id}-{i}.jpg").read_bytes() == data  # type: ignore[operator]
    assert store.keyframe_bytes(e.id, 3) is None and store.keyframe_bytes("tl_../../x", 0) is None
    (store.dir / "yard" / f"{e.id}-1.jpg").unlink()  # type: ignore[operator]
    assert store.keyframe_bytes(e.id, 1) is None and store.counters()["keyframes_missing"] == 1
    with pytest.raises(ValueError, match="2 JPEGs for 3 keyframes"):
        store.add_entry(entry("yard", 5, T0, T0 + 1, frames=3), [jpeg(1), jpeg(2)])


def test_captions_backlog_and_failures(store: TimelineStore) -> None:
    a = entry("door", 1, T0, T0 + 10, frames=1)
    b = entry("door", 2, T0 + 10, T0 + 20, frames=1)
    c = entry("door", 3, T0 + 20, T0 + 30, frames=0)  # nothing to caption it from
    d = entry("door", 4, T0 + 30, T0 + 40, frames=1, caption="a cat")
    for e in (a, b, c, d):
        store.add_entry(e, [jpeg(50)] * len(e.keyframes))
    store.flush()
    assert store.backlog() == 2
    assert [e.id for e in store.uncaptioned(limit=10)] == [b.id, a.id]  # newest first
    store.caption_failed(b.id, "model away")
    store.flush()
    assert [e.id for e in store.uncaptioned(limit=1)] == [b.id] and store.counters()["caption_failures"] == 1
    store.set_caption(b.id, "a red van parks")
    store.flush()
    assert store.backlog() == 1 and store.get(b.id).caption_state == "done"  # type: ignore[union-attr]
    assert [h.entry.id for h in store.search(TimelineQuery(text="van")).hits] == [b.id]
    assert store.counters()["caption_backlog"] == 1


def test_answers_during_a_capture_entry_are_searchable(store: TimelineStore) -> None:
    now = time.time()
    store.log.response(
        response_id="r",
        camera="gate",
        kind="proactive",
        question=None,
        answer="A forklift crosses the gate.",
        ttft_ms=1.0,
    )
    e = entry("gate", 7, now - 5, now + 5)
    store.add_entry(e, [])
    store.flush()
    hits = store.search(TimelineQuery(text="forklift")).hits
    assert [h.entry.id for h in hits] == [e.id] and hits[0].entry.answers == ("A forklift crosses the gate.",)


def test_between_is_oldest_first_and_overlapping(store: TimelineStore) -> None:
    es = [entry("door", i, T0 + 100 * i, T0 + 100 * i + 100) for i in range(5)]
    es.append(entry("yard", 1, T0 + 150, T0 + 160))
    for e in es:
        store.add_entry(e, [])
    store.flush()
    got = store.between("door", T0 + 150, T0 + 320, limit=10)
    assert [e.scene for e in got] == [1, 2, 3]
    assert [e.camera for e in store.between(None, T0 + 150, T0 + 160, limit=10)] == ["door", "yard"]
    assert len(store.between(None, 0, 2e9, limit=2)) == 2


def test_rows_and_files_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "ev.sqlite"
    s = open_store(db)
    e = entry("door", 1, T0, T0 + 10, frames=1, caption="a bicycle leans on the fence")
    s.add_entry(e, [jpeg(99)])
    close_store(s)
    s = open_store(db)
    try:
        assert s.get(e.id) == e.__class__(**{**_fields(e), "caption_state": "done"})
        assert s.keyframe_bytes(e.id, 0) == jpeg(99)
        assert [h.entry.id for h in s.search(TimelineQuery(text="bicycle")).hits] == [e.id]
    finally:
        close_store(s)


def _fields(e: TimelineEntry) -> dict[str, object]:
    return {f: getattr(e, f) for f in e.__dataclass_fields__}
