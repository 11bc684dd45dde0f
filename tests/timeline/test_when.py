"""Time expressions → exact windows, with a fixed now, in a zone with DST (America/New_York, in winter time: UTC-5),
in UTC, and in a zone without DST (Asia/Kolkata, UTC+05:30)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from livesight.timeline.when import Window, parse_window

NY = "America/New_York"


def at(zone: str, month: int, day: int, h: int, m: int = 0, s: int = 0) -> float:
    return dt.datetime(2026, month, day, h, m, s, tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


@pytest.mark.parametrize("zone", [NY, "UTC", "Asia/Kolkata"])
@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("What happened at 3 pm?", (3, 4, 14, 45), (3, 4, 15, 15)),
        ("what happened this morning", (3, 4, 6, 0), (3, 4, 12, 0)),
        ("Anything yesterday?", (3, 3, 0, 0), (3, 4, 0, 0)),
        ("what did you see yesterday at 3pm", (3, 3, 14, 45), (3, 3, 15, 15)),
        ("what happened 10 minutes ago?", (3, 4, 15, 17, 30), (3, 4, 15, 22, 30)),
        ("who came in the last hour", (3, 4, 14, 30), (3, 4, 15, 30)),
        ("who came between 2 and 4", (3, 4, 14, 0), (3, 4, 15, 30)),  # ends now: nothing after now is past
        ("between 9 and 11 am", (3, 4, 9, 0), (3, 4, 11, 0)),
        ("between 4 and 5 pm", (3, 3, 16, 0), (3, 3, 17, 0)),  # both pm: yesterday's, today's is to come
        ("between 10 and 2", (3, 4, 10, 0), (3, 4, 14, 0)),
        ("what happened last night", (3, 3, 18, 0), (3, 4, 6, 0)),
        ("what happened since 9", (3, 4, 9, 0), (3, 4, 15, 30)),
        ("what happened today", (3, 4, 0, 0), (3, 4, 15, 30)),
        ("yesterday morning", (3, 3, 6, 0), (3, 3, 12, 0)),
        ("at 10pm", (3, 3, 21, 45), (3, 3, 22, 15)),  # 10 pm has not come yet today: yesterday's
        ("around 9:15", (3, 4, 9, 10), (3, 4, 9, 20)),
        ("in the past 30 minutes", (3, 4, 15, 0), (3, 4, 15, 30)),
        ("since this morning", (3, 4, 6, 0), (3, 4, 15, 30)),
        ("last tuesday", (3, 3, 0, 0), (3, 4, 0, 0)),
        ("an hour ago", (3, 4, 14, 15), (3, 4, 14, 45)),
    ],
)
def test_expressions_give_exact_windows(zone: str, question: str, start: tuple, end: tuple) -> None:
    now = at(zone, 3, 4, 15, 30)  # Wednesday 4 March 2026, 15:30 local
    w = parse_window(question, now, zone)
    assert w is not None, question
    assert (w.start, w.end) == (at(zone, *start), at(zone, *end)), (question, w)
    assert w.phrase and w.phrase.lower() in question.lower()


@pytest.mark.parametrize(
    "question",
    [
        "when did the red van come?",
        "what is on the table now?",
        "is the door open?",
        "how many cars are there in 2 lanes?",
        "describe the second person",
        "may I ask what you see",
        "what will happen this evening",  # the future is no window
    ],
)
def test_no_time_in_the_past_is_none(question: str) -> None:
    assert parse_window(question, at(NY, 3, 4, 15, 30), NY) is None


def test_the_zone_decides_the_day() -> None:
    """The same instant is a different "this morning" in New York and in Kolkata."""
    now = at("UTC", 3, 4, 20, 0)  # 15:00 in New York, 01:30 (5 March) in Kolkata
    ny = parse_window("this morning", now, NY)
    assert ny == Window(at(NY, 3, 4, 6), at(NY, 3, 4, 12), "this morning")
    assert parse_window("this morning", now, "Asia/Kolkata") is None  # 01:30: this morning has not begun
    kol = parse_window("yesterday", now, "Asia/Kolkata")
    assert kol == Window(at("Asia/Kolkata", 3, 4, 0), at("Asia/Kolkata", 3, 5, 0), "yesterday")


def test_yesterday_across_a_dst_change_is_23_hours() -> None:
    """8 March 2026 in New York has 23 hours (clocks go forward at 2 am): "yesterday" asked on the 9th spans them."""
    now = at(NY, 3, 9, 12, 0)
    w = parse_window("what happened yesterday?", now, NY)
    assert w is not None and w.end - w.start == 23 * 3600
    ten_ago = parse_window("10 minutes ago", now, NY)
    assert ten_ago is not None and (ten_ago.start + ten_ago.end) / 2 == now - 600


def test_the_local_zone_by_default() -> None:
    w = parse_window("in the last hour", 1_800_000_000.0)
    assert w == Window(1_800_000_000.0 - 3600, 1_800_000_000.0, "in the last hour")
