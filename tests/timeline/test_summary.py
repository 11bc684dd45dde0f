"""Summaries of a timeline period (livesight/timeline/summary.py): the lines the model is given, map-reduce past the
prompt budget, the cache of finished hours, the empty period, and which questions ask for a summary."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from livesight.timeline.store import TimelineStore
from livesight.timeline.summary import (
    Summaries,
    chunks,
    is_summary_question,
    lines_of,
    summary_window,
)
from livesight.types import Keyframe, TimelineEntry
from tests.timeline.conftest import jpeg

HOUR = datetime(2026, 12, 7, 14, 0, tzinfo=UTC).timestamp()  # 14:00 UTC
NOW = HOUR + 3 * 3600


def entry(i: int, start: float, caption: str | None, *, camera: str = "door", length: float = 60.0) -> TimelineEntry:
    return TimelineEntry(
        id=f"tl_{i:04d}",
        camera=camera,
        scene=i,
        chunk=0,
        pts=start - HOUR,
        wall_time=start,
        end_pts=start - HOUR + length,
        end_wall_time=start + length,
        caption=caption,
        keyframes=(Keyframe("first", start - HOUR, start),),
        caption_state="done" if caption else "pending",
    )


def timeline(store: TimelineStore, entries: list[TimelineEntry]) -> TimelineStore:
    """The entries written to a real store (real SQLite file, real JPEGs), committed."""
    for e in entries:
        store.add_entry(e, [jpeg(100 + e.scene % 100)])
    store.flush()
    return store


class Model:
    """Generation as the daemon's text-only jobs do it, recording each prompt (answers: a short line per call)."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def __call__(self, prompt: str, on_text: object) -> str:
        self.prompts.append(prompt)
        text = f"summary {len(self.prompts)}"
        if callable(on_text):
            for word in text.split(" "):
                on_text(word + " ")
        await asyncio.sleep(0)
        return text


def test_lines_merge_repeated_captions_and_skip_uncaptioned() -> None:
    es = [
        entry(1, HOUR, "an empty street"),
        entry(2, HOUR + 60, "an empty  street"),
        entry(3, HOUR + 120, None),
        entry(4, HOUR + 180, "a red van parks"),
    ]
    lines = lines_of(es)
    assert [(x.text, x.entry.id, x.end - x.start) for x in lines] == [
        ("an empty street", "tl_0001", 120.0),
        ("a red van parks", "tl_0004", 60.0),
    ]


def test_chunks_keep_to_the_budget() -> None:
    groups = chunks(["a" * 90, "b" * 90, "c" * 90, "d" * 500], 200)
    assert [len(g) for g in groups] == [2, 1, 1]
    assert all(sum(len(t) + 1 for t in g) <= 201 for g in groups)


async def test_one_generation_streams_with_time_stamped_lines_and_citations(store: TimelineStore) -> None:
    tl = timeline(store, [entry(1, HOUR + 300, "a red van parks"), entry(2, HOUR + 900, "a person carries a box")])
    model, deltas = Model(), []
    s = Summaries(tl.between, zone=UTC, now=lambda: NOW)
    out = await s.summarize("door", HOUR, HOUR + 3600, generate=model, on_text=deltas.append)
    assert len(model.prompts) == 1
    assert "14:05:00–14:06:00 a red van parks" in model.prompts[0]
    assert "14:15:00–14:16:00 a person carries a box" in model.prompts[0]
    assert out.text == "summary 1" and "".join(deltas).strip() == "summary 1"
    assert [c.id for c in out.citations] == ["tl_0001", "tl_0002"]
    assert out.citations[0].thumbnail == "/api/timeline/tl_0001/keyframes/0.jpg"
    assert not out.cached and out.generations == 1


async def test_past_the_budget_chunks_are_summarised_then_reduced(store: TimelineStore) -> None:
    es = [entry(i, HOUR + i * 30, f"scene number {i} with a long caption " + "x" * 40) for i in range(60)]
    model, deltas = Model(), []
    s = Summaries(timeline(store, es).between, zone=UTC, prompt_chars=1000, now=lambda: NOW)
    out = await s.summarize("door", HOUR, HOUR + 3600, generate=model, on_text=deltas.append)
    maps = [p for p in model.prompts if "one line per scene" in p]
    reduces = [p for p in model.prompts if "Summaries of consecutive parts" in p]
    assert len(maps) >= 5 and len(reduces) == 1
    assert all(len(p) < 1400 for p in model.prompts)  # each prompt's lines within the budget (+ the instructions)
    assert model.prompts[-1] is reduces[0]
    assert "summary 1" in reduces[0] and f"summary {len(maps)}" in reduces[0]
    assert "".join(deltas).strip() == out.text == f"summary {len(model.prompts)}"  # only the final one streams
    assert out.generations == len(model.prompts)
    assert 2 <= len(out.citations) <= 12 and out.citations[0].id == "tl_0000" and out.citations[-1].id == "tl_0059"


async def test_a_long_period_is_thinned_to_a_bounded_number_of_generations(store: TimelineStore) -> None:
    es = [entry(i, HOUR + i * 10, f"scene {i} " + "y" * 80) for i in range(300)]
    model = Model()
    s = Summaries(timeline(store, es).between, zone=UTC, prompt_chars=500, now=lambda: NOW)
    out = await s.summarize("door", HOUR, HOUR + 3600, generate=model)
    maps = [p for p in model.prompts if "one line per scene" in p]
    assert len(maps) <= 12 and s.counters["thinned"] == 1
    assert "scene 0 " in maps[0] and "scene 299 " in maps[-1]  # the whole period, spread
    assert out.citations[0].id == "tl_0000" and out.citations[-1].id == "tl_0299"


async def test_a_finished_hour_is_cached_and_a_running_one_is_not(store: TimelineStore) -> None:
    tl = timeline(store, [entry(1, HOUR + 300, "a red van parks")])
    model = Model()
    s = Summaries(tl.between, zone=UTC, now=lambda: NOW)
    first = await s.summarize("door", HOUR, HOUR + 3600, generate=model)
    again: list[str] = []
    second = await s.summarize("door", HOUR, HOUR + 3600, generate=model, on_text=again.append)
    assert len(model.prompts) == 1 and second.cached and second.text == first.text == "".join(again)
    assert second.citations == first.citations
    # not on the hour, or not over yet: generated each time
    await s.summarize("door", HOUR + 60, HOUR + 3660, generate=model)
    await s.summarize("door", HOUR + 60, HOUR + 3660, generate=model)
    assert len(model.prompts) == 3
    late = Summaries(tl.between, zone=UTC, now=lambda: HOUR + 1800)
    await late.summarize("door", HOUR, HOUR + 3600, generate=model)
    await late.summarize("door", HOUR, HOUR + 3600, generate=model)
    assert len(model.prompts) == 5


async def test_an_hour_with_an_entry_still_to_caption_is_not_cached(store: TimelineStore) -> None:
    tl = timeline(store, [entry(1, HOUR + 300, "a red van parks"), entry(2, HOUR + 600, None)])
    model = Model()
    s = Summaries(tl.between, zone=UTC, now=lambda: NOW)
    await s.summarize("door", HOUR, HOUR + 3600, generate=model)
    await s.summarize("door", HOUR, HOUR + 3600, generate=model)
    assert len(model.prompts) == 2


async def test_the_hour_is_the_zones_hour(store: TimelineStore) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in December: 14:00 UTC is 15:00 there, still on the hour
    half = ZoneInfo("Asia/Kolkata")  # UTC+5:30: 14:00 UTC is 19:30 there, not on the hour
    tl = timeline(store, [entry(1, HOUR + 300, "a red van parks")])
    assert Summaries(tl.between, zone=berlin, now=lambda: NOW).finished_hour(HOUR, HOUR + 3600)
    assert not Summaries(tl.between, zone=half, now=lambda: NOW).finished_hour(HOUR, HOUR + 3600)


async def test_an_empty_period_is_said_without_the_model(store: TimelineStore) -> None:
    model, deltas = Model(), []
    s = Summaries(timeline(store, [entry(1, HOUR + 300, "a red van parks")]).between, zone=UTC, now=lambda: NOW)
    out = await s.summarize("door", HOUR + 7200, HOUR + 10800, generate=model, on_text=deltas.append)
    assert model.prompts == [] and out.citations == ()
    assert out.text == "Nothing was recorded on camera door between 2026-12-07 16:00 and 17:00 UTC."
    assert "".join(deltas) == out.text
    # entries without any caption yet: said so, still without the model
    s2 = Summaries(timeline(store, [entry(5, HOUR + 1300, None)]).between, zone=UTC, now=lambda: NOW)
    out2 = await s2.summarize("door", HOUR + 1200, HOUR + 1500, generate=model)
    assert model.prompts == [] and "no caption yet" in out2.text


async def test_a_period_that_ends_before_it_starts_is_refused(store: TimelineStore) -> None:
    s = Summaries(timeline(store, []).between, zone=UTC)
    with pytest.raises(ValueError, match="end after it starts"):
        await s.summarize("door", HOUR, HOUR, generate=Model())


@pytest.mark.parametrize(
    "text",
    [
        "what happened in the last hour?",
        "What happened while I was out this morning?",
        "did anything happen since 9?",
        "summarise the afternoon",
        "Give me a summary of yesterday",
        "anything going on at the door?",
        "what's happened today",
    ],
)
def test_summary_questions(text: str) -> None:
    assert is_summary_question(text)


@pytest.mark.parametrize(
    "text", ["when did the van arrive?", "is there a person at the door?", "what colour is the car?", "describe it"]
)
def test_other_questions(text: str) -> None:
    assert not is_summary_question(text)


def test_summary_window_takes_the_parsed_window_and_defaults_to_the_last_hour() -> None:
    def parse(text: str, now: float, zone: object) -> tuple[float, float] | None:
        return (now - 4 * 3600, now + 3600) if "morning" in text else None

    assert summary_window("what happened?", NOW, UTC, parse) == (NOW - 3600, NOW)
    assert summary_window("what happened this morning?", NOW, UTC, parse) == (NOW - 4 * 3600, NOW)  # ends now
    assert summary_window("when did the van come this morning?", NOW, UTC, parse) is None


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("what happened in the last hour?", (NOW - 3600, NOW)),
        ("what happened in the last 20 minutes?", (NOW - 1200, NOW)),
        ("what happened this morning?", (HOUR - 8 * 3600, HOUR - 2 * 3600)),
        ("summarise what happened between 14:00 and 15:00", (HOUR, HOUR + 3600)),
        ("anything happen since 16:00?", (HOUR + 2 * 3600, NOW)),
        ("What happened?", (NOW - 3600, NOW)),
    ],
)
def test_periods_from_when_py(text: str, span: tuple[float, float]) -> None:
    from livesight.timeline.when import parse_window

    assert summary_window(text, NOW, UTC, parse_window) == pytest.approx(span, abs=1)


@pytest.mark.parametrize(
    "text", ["What happened 10 minutes ago?", "what happened at 3 pm?", "what happened around 16:10?"]
)
def test_a_moment_is_left_to_recall(text: str) -> None:
    from livesight.timeline.when import parse_window

    assert summary_window(text, NOW, UTC, parse_window) is None


async def test_a_parser_that_fails_leaves_the_question_to_the_live_answer(store: TimelineStore) -> None:
    def broken(text: str, now: float, zone: object) -> None:
        raise RuntimeError("dateparser choked")

    s = Summaries(timeline(store, []).between, zone=UTC, parse=broken, now=lambda: NOW)
    assert await s.window_of("what happened this morning?") is None
    assert await s.window_of("is the door open?") is None  # not a summary question: never parsed
