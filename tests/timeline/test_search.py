"""Search on a real timeline: safe FTS5 queries from a user's words, BM25 best first (rank higher is better), camera
and time filters (overlap), listing newest first, cursors (stable, signed, bound to their query)."""

from __future__ import annotations

import pytest

from livesight.ids import new_id
from livesight.timeline.search import fts_query
from livesight.timeline.store import TimelineStore
from livesight.types import TimelineEntry, TimelineQuery

T0 = 1_790_000_000.0


def add(store: TimelineStore, camera: str, i: int, caption: str | None, *, length: float = 60.0) -> TimelineEntry:
    e = TimelineEntry(
        id=new_id("tl_"), camera=camera, scene=i, chunk=0, pts=i * 100.0, wall_time=T0 + i * 100,
        end_pts=i * 100.0 + length, end_wall_time=T0 + i * 100 + length, caption=caption,
    )  # fmt: skip
    store.add_entry(e, [])
    return e


def ids(page: object) -> list[str]:
    return [h.entry.id for h in page.hits]  # type: ignore[attr-defined]


def test_fts_query_quotes_content_words_only() -> None:
    assert fts_query("When did the white van arrive?") == '"white" OR "van" OR "arrive"'
    assert fts_query('van" OR caption:* NEAR(x') == '"van" OR "caption" OR "near"'  # operators are just words
    assert fts_query("Café — 12 vans, vans! snake_case") == '"cafe" OR "12" OR "vans" OR "snake" OR "case"'
    for nothing in ("", "   ", "?!", "what is it", "a b c"):
        with pytest.raises(ValueError, match="no word to search for"):
            fts_query(nothing)


def test_bm25_best_first_with_rank_higher_is_better(store: TimelineStore) -> None:
    weak = add(store, "door", 1, "a van far away behind trees and a person and a dog and a bicycle")
    strong = add(store, "door", 2, "a white van, a van parked: van doors open")
    other = add(store, "yard", 3, "a cat sleeps")
    store.flush()
    page = store.search(TimelineQuery(text="the van"))
    assert ids(page) == [strong.id, weak.id] and other.id not in ids(page)
    assert page.hits[0].rank is not None and page.hits[1].rank is not None
    assert page.hits[0].rank > page.hits[1].rank
    assert ids(store.search(TimelineQuery(text="van", cameras=("yard",)))) == []
    assert set(ids(store.search(TimelineQuery(text="van OR cat")))) == {strong.id, weak.id, other.id}
    with pytest.raises(ValueError, match="no word"):
        store.search(TimelineQuery(text="what did it do?"))


def test_time_window_keeps_overlapping_entries(store: TimelineStore) -> None:
    es = [add(store, "door", i, f"scene {i} a truck") for i in range(10)]  # [T0+100i, T0+100i+60]
    long = add(store, "yard", 20, "a truck waits all along", length=1500)  # [T0+2000, T0+3500]
    store.flush()
    q = TimelineQuery(start=T0 + 230, end=T0 + 450)
    assert ids(store.search(q)) == [es[4].id, es[3].id, es[2].id]  # 2 ends at 260, 4 starts at 400
    assert set(ids(store.search(TimelineQuery(text="truck", start=T0 + 230, end=T0 + 450)))) == {
        es[2].id, es[3].id, es[4].id
    }  # fmt: skip
    assert ids(store.search(TimelineQuery(start=T0 + 3000, end=T0 + 3100))) == [long.id]  # overlaps, starts before
    assert ids(store.search(TimelineQuery(text="truck", start=T0 + 3000))) == [long.id]
    assert ids(store.search(TimelineQuery(end=T0 + 30))) == [es[0].id]
    assert ids(store.search(TimelineQuery(start=T0 + 10**6))) == []
    with pytest.raises(ValueError, match="from is after to"):
        store.search(TimelineQuery(start=T0 + 10, end=T0))


def test_open_entries_reach_to_now(store: TimelineStore) -> None:
    from livesight.types import SceneChange

    store.log.scene(SceneChange("door", 1, 0.0, T0, 1.0))  # open, never closed
    store.flush()
    assert len(store.search(TimelineQuery(start=T0 + 86_400 * 30)).hits) == 1


def test_listing_is_newest_first_and_cursors_page_stably(store: TimelineStore) -> None:
    es = [add(store, ("door", "yard", "street")[i % 3], i, f"a person walks by, number {i}") for i in range(25)]
    store.flush()
    seen: list[str] = []
    q = TimelineQuery(limit=10)
    page = store.search(q)
    seen += ids(page)
    late = add(store, "door", 99, "a person arrives late")  # written after the first page
    store.flush()
    while page.next_cursor:
        page = store.search(TimelineQuery(limit=10, cursor=page.next_cursor))
        seen += ids(page)
    assert seen == [e.id for e in reversed(es)] and late.id not in seen
    # two cameras: merged newest first
    two = store.search(TimelineQuery(cameras=("door", "yard"), limit=30))
    assert ids(two) == [late.id, *[e.id for e in reversed(es) if e.camera in ("door", "yard")]]
    # ranked pages: every hit once
    q = TimelineQuery(text="person walks", limit=7)
    page, got = store.search(q), []
    got += ids(page)
    while page.next_cursor:
        page = store.search(TimelineQuery(text="person walks", limit=7, cursor=page.next_cursor))
        got += ids(page)
    assert sorted(got) == sorted(e.id for e in [*es, late]) and len(got) == len(set(got))


def test_a_changed_or_foreign_cursor_is_refused(store: TimelineStore) -> None:
    for i in range(5):
        add(store, "door", i, "a dog")
    store.flush()
    cursor = store.search(TimelineQuery(limit=2)).next_cursor
    assert cursor is not None
    body, _, sig = cursor.partition(".")
    for bad in (cursor[:-1] + ("0" if cursor[-1] != "0" else "1"), "x" + cursor, "garbage", "." + sig, body + "."):
        with pytest.raises(ValueError, match="cursor is not valid"):
            store.search(TimelineQuery(limit=2, cursor=bad))
    with pytest.raises(ValueError, match="another query"):
        store.search(TimelineQuery(text="dog", limit=2, cursor=cursor))
    assert len(store.search(TimelineQuery(limit=2, cursor=cursor)).hits) == 2


def test_empty_camera_list_and_limits(store: TimelineStore) -> None:
    add(store, "door", 1, "a dog")
    store.flush()
    assert store.search(TimelineQuery(cameras=())).hits == ()
    for bad in (0, 501):
        with pytest.raises(ValueError, match="limit"):
            store.search(TimelineQuery(limit=bad))


def test_ranks_follow_a_growing_timeline(store: TimelineStore) -> None:
    first = add(store, "door", 0, "a van")
    store.flush()
    assert ids(store.search(TimelineQuery(text="van"))) == [first.id]  # statistics of a one-row timeline seen
    for i in range(1, 40):
        add(store, "door", i, "a van passes")
    rare = add(store, "door", 50, "a zebra")
    store.flush()
    page = store.search(TimelineQuery(text="zebra van", limit=3))
    assert ids(page)[0] == rare.id  # the rare word outweighs the common one: fresh counts, not the first query's
    assert page.hits[0].rank is not None and page.hits[1].rank is not None
    assert page.hits[0].rank > 2 * page.hits[1].rank > 0
