"""Time expressions in a question → the time window it asks about, in the configured zone.

    parse_window("what happened this morning?", now, "Europe/Berlin") → Window(start, end, "this morning")

Windows are epoch seconds, [start, end] with end ≤ now (nothing after now is in the past). What is understood:

    in the last hour, in the past 2 hours, last 30 minutes   [now - span, now]
    between 2 and 4, from 9:30 to 11                         the latest such period that started before now
    since 9, since this morning, since yesterday              [that moment, now]
    this morning/afternoon/evening, last night, tonight,
    yesterday morning …                                       the part of that day (morning 06-12, afternoon 12-18,
                                                              evening 18-22, night 18-06 of the next day)
    today, yesterday, on monday, last tuesday, on march 3     the whole day (today: up to now)
    at 3 pm, at 9:15, yesterday at 3pm, 10 minutes ago        a moment, ± a tolerance (±15 min around a whole hour,
                                                              ±5 min around hh:mm, ± a quarter of "N units ago")

Dates and moments ("yesterday at 3pm", "10 minutes ago", "last tuesday", "on march 3 at 5pm") come from `dateparser`
(maintained, many phrasings and languages; `search_dates` finds them inside a sentence): it is given the wall time of
`now` in the zone as RELATIVE_BASE, PREFER_DATES_FROM past, and its naive wall-clock result is placed in the zone
here (zoneinfo: DST-correct, no pytz). It does not parse periods ("this morning" is 09:00 to it, "between 2 and 4" a
date, "last hour" nothing), so those are our own small rules, tried first. A dateparser match is only taken when the
phrase carries a time cue (a clock time, "ago", a day name, …): it also reads plain words ("may", "second") as dates.

dateparser is regex-heavy (~1 ms a question once warm, ~150 ms the first time): call parse_window off the event loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zoneinfo
from dataclasses import dataclass

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0
_UNITS = {"second": 1.0, "minute": 60.0, "min": 60.0, "hour": HOUR, "hr": HOUR, "day": DAY, "week": 7 * DAY}
_WORD_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "ten": 10,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "few": 3,
    "couple of": 2,
}
# parts of a day: (start hour, end hour) — night runs into the next day
_PARTS = {"morning": (6, 12), "afternoon": (12, 18), "evening": (18, 22), "night": (18, 30)}

_TIME = r"(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.|o'?clock)?"
_NUMWORD = r"\d+|" + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True))
_SPAN = re.compile(
    rf"\b(?:(?:in|over|during|for|within)\s+)?(?:the\s+)?(?:last|past)\s+(?:({_NUMWORD})\s+)?"
    r"(seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?)\b",
    re.IGNORECASE,
)
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_TIME}\s+(?:and|to|until|till|-)\s+{_TIME}(?!\s*(?:minutes?|hours?))\b")
_DAYREF = r"(this|yesterday|last|today|tonight)"
_PART = re.compile(rf"\b(?:{_DAYREF}\s+)?(morning|afternoon|evening|night)\b|\b(tonight)\b", re.IGNORECASE)
_SINCE_TIME = re.compile(rf"\bsince\s+{_TIME}(?!\s*(?:minutes?|hours?|days?))\b", re.IGNORECASE)
_SINCE_DAY = re.compile(r"\bsince\s+(yesterday|today|this\s+morning|this\s+afternoon|this\s+evening|last\s+night)\b")
_AT_TIME = re.compile(rf"\b(?:at|around|about)\s+{_TIME}(?=\W|$)", re.IGNORECASE)
_DAY = re.compile(r"\b(today|yesterday)\b")
_CLOCK = re.compile(r"\d\s*(?:am|pm|a\.m\.|p\.m\.)|\d[:.h]\d{2}\b|\bnoon\b|\bmidnight\b|o'?clock", re.IGNORECASE)
# what makes a dateparser match a time reference (it also parses plain words such as "may" or "second" as dates)
_CUE = re.compile(
    r"\bago\b|\byesterday\b|\btoday\b|\blast\s+\w+day\b|\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|"
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b|\d{4}-\d{2}-\d{2}|"
    r"\d\s*(?:am|pm|a\.m\.|p\.m\.)|\d[:.h]\d{2}\b|\bnoon\b|\bmidnight\b",
    re.IGNORECASE,
)
_AGO = re.compile(rf"\b({_NUMWORD})\s+(seconds?|minutes?|mins?|hours?|hrs?|days?|weeks?)\s+ago\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Window:
    """A period a question asks about: [start, end] in epoch seconds; `phrase`: the words that named it."""

    start: float
    end: float
    phrase: str


def zone_of(name: str | dt.tzinfo | None) -> dt.tzinfo:
    """An IANA zone name (memory.recall.timezone), a tzinfo, or None: the machine's local zone (IANA, DST-aware)."""
    if isinstance(name, dt.tzinfo):
        return name
    if name is not None:
        return zoneinfo.ZoneInfo(name)
    import tzlocal  # dateparser's own dependency: the machine's zone as an IANA zone (DST-aware)

    return tzlocal.get_localzone()


def parse_window(text: str, now: float, zone: str | dt.tzinfo | None = None) -> Window | None:
    """The time window `text` refers to, relative to `now` (epoch seconds) in `zone`; None when it names no time in
    the past. Blocking and regex-heavy (dateparser): run it in a thread."""
    tz = zone_of(zone)
    low = " ".join(text.lower().split())
    base = dt.datetime.fromtimestamp(now, tz)
    for rule in (_last_span, _between, _since, _part_of_day, _with_dateparser, _whole_day, _at_clock):
        w = rule(low, now, base)
        if w is not None:
            end = min(w.end, now)
            return Window(w.start, end, w.phrase) if w.start < end else None
    return None


# ---- helpers ------------------------------------------------------------------------------------------------


def _at(day: dt.datetime, hour: float, minute: int = 0) -> float:
    """Epoch seconds of the wall time `hour:minute` on `day`'s date in its zone (hours ≥ 24 run into the next days)."""
    d = day.date() + dt.timedelta(days=int(hour // 24))
    h = int(hour % 24)
    return dt.datetime(d.year, d.month, d.day, h, minute, tzinfo=day.tzinfo).timestamp()


def _midnight(base: dt.datetime, days_back: int = 0) -> dt.datetime:
    d = base.date() - dt.timedelta(days=days_back)
    return dt.datetime(d.year, d.month, d.day, tzinfo=base.tzinfo)


def _count(word: str | None) -> float:
    if not word:
        return 1.0
    return float(word) if word.isdigit() else float(_WORD_NUMBERS.get(word, 1))


def _unit(word: str) -> float:
    return _UNITS[word.rstrip("s")]


def _hours(h: str, m: str | None, ampm: str | None) -> list[tuple[int, int]] | None:
    """The 24-h readings of a clock time: one with am/pm or past 12, else the am and the pm one."""
    hour, minute = int(h), int(m or 0)
    if hour > 23 or minute > 59:
        return None
    mark = (ampm or "").replace(".", "")
    if mark in ("am", "pm"):
        if hour == 0 or hour > 12:
            return None
        hour = hour % 12 + (12 if mark == "pm" else 0)
        return [(hour, minute)]
    if hour == 0 or hour > 12:
        return [(hour, minute)]
    return [(hour % 12, minute), (hour % 12 + 12, minute)]


def _mark_of(ampm: str | None) -> str | None:
    """An am/pm mark to share with the other end of a period (not "o'clock")."""
    return ampm if ampm and ampm.replace(".", "") in ("am", "pm") else None


def _latest_past(base: dt.datetime, now: float, readings: list[tuple[int, int]]) -> float | None:
    """The latest moment ≤ now at one of these wall-clock readings (today or the day before)."""
    best = None
    for back in (0, 1):
        day = _midnight(base, back)
        for h, m in readings:
            t = _at(day, h, m)
            if t <= now and (best is None or t > best):
                best = t
    return best


# ---- the rules, tried in order ------------------------------------------------------------------------------


def _last_span(low: str, now: float, base: dt.datetime) -> Window | None:
    m = _SPAN.search(low)
    if m is None:
        return None
    return Window(now - _count(m.group(1)) * _unit(m.group(2)), now, m.group(0).strip())


def _between(low: str, now: float, base: dt.datetime) -> Window | None:
    m = _BETWEEN.search(low)
    if m is None:
        return None
    first = _hours(m.group(1), m.group(2), m.group(3) or _mark_of(m.group(6)))  # "between 2 and 4 pm": both pm
    second = _hours(m.group(4), m.group(5), m.group(6) or m.group(3))
    if not first or not second:
        return None
    start = _latest_past(base, now, first)
    if start is None:
        return None
    ends = [_at(_midnight(base, back), h, mm) for back in (-1, 0, 1) for h, mm in second]
    later = [t for t in ends if start < t <= start + DAY]
    return Window(start, min(later), m.group(0)) if later else None


def _since(low: str, now: float, base: dt.datetime) -> Window | None:
    m = _SINCE_DAY.search(low)
    if m is not None:
        inner = _part_of_day(m.group(1), now, base) or _whole_day(m.group(1), now, base)
        return Window(inner.start, now, m.group(0)) if inner is not None else None
    m = _SINCE_TIME.search(low)
    if m is None:
        return None
    readings = _hours(m.group(1), m.group(2), m.group(3))
    start = _latest_past(base, now, readings) if readings else None
    return Window(start, now, m.group(0)) if start is not None else None


def _part_of_day(low: str, now: float, base: dt.datetime) -> Window | None:
    m = _PART.search(low)
    if m is None:
        return None
    if m.group(3):  # tonight
        ref, part = "tonight", "night"
    else:
        ref, part = (m.group(1) or "this"), m.group(2)
    if ref in ("this", "today", "tonight"):
        day = _midnight(base)
        if part == "night" and base.hour < 6:  # "tonight" asked at 2 am: the night that is still on
            day = _midnight(base, 1)
    else:  # yesterday …, last night, last evening
        day = _midnight(base, 1)
    a, b = _PARTS[part]
    return Window(_at(day, a), _at(day, b), m.group(0))


def _whole_day(low: str, now: float, base: dt.datetime) -> Window | None:
    if _CLOCK.search(low):  # "yesterday at 3pm" is a moment (dateparser), not the whole day
        return None
    m = _DAY.search(low)
    if m is None:
        return None
    back = 0 if m.group(1) == "today" else 1
    day = _midnight(base, back)
    return Window(day.timestamp(), _midnight(base, back - 1).timestamp(), m.group(0))


def _at_clock(low: str, now: float, base: dt.datetime) -> Window | None:
    """ "at 3" / "around 9:15": the latest such moment before now (dateparser leaves bare hours alone)."""
    m = _AT_TIME.search(low)
    if m is None:
        return None
    readings = _hours(m.group(1), m.group(2), m.group(3))
    t = _latest_past(base, now, readings) if readings else None
    if t is None:
        return None
    tol = 5 * 60.0 if m.group(2) else 15 * 60.0
    return Window(t - tol, t + tol, m.group(0))


def _with_dateparser(low: str, now: float, base: dt.datetime) -> Window | None:
    if not _CUE.search(low):
        return None
    from dateparser.search import search_dates  # heavy import (regex tables): on first use, in the caller's thread

    settings = {
        "RELATIVE_BASE": base.replace(tzinfo=None),  # wall time in the zone; its answer is placed in the zone below
        "PREFER_DATES_FROM": "past",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    found = search_dates(low, languages=["en"], settings=settings) or []
    for phrase, when in found:
        if not _CUE.search(phrase) or phrase.strip() in ("now", "today"):
            continue
        wall = when.replace(tzinfo=base.tzinfo)
        t = wall.timestamp()
        ago = _AGO.search(phrase)
        if ago is not None:
            tol = max(60.0, _count(ago.group(1)) * _unit(ago.group(2)) / 4)
            return Window(t - tol, t + tol, phrase)
        if _CLOCK.search(phrase):
            if t > now:  # "at 10pm" asked at 3 pm means yesterday's
                t -= DAY
            tol = 5 * 60.0 if re.search(r"\d[:.h]\d{2}", phrase) else 15 * 60.0
            return Window(t - tol, t + tol, phrase)
        day = _midnight(wall)
        return Window(day.timestamp(), _midnight(wall, -1).timestamp(), phrase)
    return None
