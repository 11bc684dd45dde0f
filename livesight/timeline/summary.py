"""Summaries of a period of a camera's timeline, from its entries' captions.

    summaries = Summaries(store.between, zone=ZoneInfo("Europe/Berlin"))
    result = await summaries.summarize("door", start, end, generate=gen, on_text=print)

The entries overlapping [start, end] (oldest first) become time-stamped lines ("14:03:10–14:05:40 a red van parks";
a run of entries with the same caption is one line). When the lines fit the prompt budget, one generation summarises
them (its text streamed through `on_text`); past the budget, map-reduce: each chunk of lines is summarised on its own
(not streamed), then the chunk summaries are summarised together (streamed), in rounds until they fit. A period
whose lines take more than MAX_MAP_CALLS chunks is thinned first (lines kept evenly over it): bounded work. An empty
period is answered with a plain sentence, without the model. Citations: the entries the lines came from (the first of
each run), at most MAX_CITATIONS, spread over the period.

A finished hour (a window of exactly one hour starting on the hour in `zone`, wholly in the past, every entry in it
captioned) is cached (a bounded LRU): asking again does not regenerate it.

`generate(prompt, on_text)` is the daemon's: a text-only generation job in the generation queue (the prompt alone,
without the camera's live context), at the priority of a question; it returns the text or raises.

`summary_window(text, now, zone, parse)` tells a question that asks for a summary ("what happened in the last
hour?", "anything happen while I was out this morning?") and its time window.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from livesight.errors import contain
from livesight.timeline.when import parse_window
from livesight.types import Citation, TimelineEntry

log = logging.getLogger(__name__)

Between = Callable[..., list[TimelineEntry]]  # TimelineStore.between(camera, start, end, *, limit) (blocking)
OnText = Callable[[str], None]
Generate = Callable[[str, OnText | None], Awaitable[str]]  # (prompt, on_text) → the text
# (text, now, zone) → (start, end) epoch seconds or None: timeline/when.py's parse_window
ParseWindow = Callable[[str, float, tzinfo], object]  # returns a when.Window (start, end) or None

PROMPT_CHARS = 6000  # captions in one prompt at most (the map-reduce chunk size)
MAX_ENTRIES = 20_000  # entries read for one summary at most (31 days of one camera at chunk_s 300 is ~9,000)
MAX_CITATIONS = 12
CACHE_SIZE = 256  # finished hours kept
MAX_MAP_CALLS = 12  # chunks summarised for one summary at most (past that, lines are thinned evenly first)
MAX_ROUNDS = 4  # reduce rounds at most (each divides the text by about the chunk size over a summary's length)
HOUR_S = 3600.0
DEFAULT_WINDOW_S = HOUR_S  # "the last hour"

_INTENT = re.compile(
    r"\b(what(?:'s| has| had)?\s+(?:happened|happen|went on|has been going on|was going on|occurred|changed)"
    r"|anything\s+(?:happen|happened|going on|new|change|changed)"
    r"|summar(?:y|ise|ize|ies)|recap|overview|catch me up)\b",
    re.IGNORECASE,
)


# a time expression naming a moment ("10 minutes ago", "at 3 pm", "around 14:10"), not a period: "what happened 10
# minutes ago?" asks about that moment (recall answers it, with its keyframes), not for a summary
_MOMENT = re.compile(r"\bago\b|\b(?:at|around|about)\s+\d|\d[:.h]\d{2}|\b\d{1,2}\s*(?:am|pm|a\.m\.|p\.m\.)")
_SPAN_START = re.compile(r"\s*(?:between|since|from)\b")


@dataclass(frozen=True, slots=True)
class Summary:
    camera: str
    start: float
    end: float
    text: str
    citations: tuple[Citation, ...]
    cached: bool = False  # answered from the cache (no generation)
    entries: int = 0  # entries in the period
    generations: int = 0  # model calls it took (0: empty period or cached)


@dataclass(frozen=True, slots=True)
class Line:
    start: float
    end: float
    text: str
    entry: TimelineEntry  # the first entry of the run


def is_summary_question(text: str) -> bool:
    """A "what happened / summarise / anything happen" question."""
    return _INTENT.search(text) is not None


def summary_window(text: str, now: float, zone: tzinfo, parse: ParseWindow) -> tuple[float, float] | None:
    """The window a summary question asks about, or None when `text` is not one: the intent, and the period `parse`
    finds (when.py; none found: the last hour). A moment ("what happened 10 minutes ago?", "… at 3 pm?") is not a
    period: None (the question is answered with recall). The window ends at `now` at the latest."""
    if not is_summary_question(text):
        return None
    found = parse(text, now, zone)
    if found is None:
        return (now - DEFAULT_WINDOW_S, now)
    phrase = str(getattr(found, "phrase", ""))
    if _MOMENT.search(phrase) and not _SPAN_START.match(phrase):
        return None
    start, end = _bounds(found)
    end = min(end, now)
    if end <= start:
        return None  # a window wholly in the future: not a summary of the past
    return (start, end)


def _bounds(window: object) -> tuple[float, float]:
    if isinstance(window, tuple):
        return float(window[0]), float(window[1])
    return float(window.start), float(window.end)  # type: ignore[attr-defined]


def clock(t: float, zone: tzinfo, *, seconds: bool = True) -> str:
    return datetime.fromtimestamp(t, zone).strftime("%H:%M:%S" if seconds else "%H:%M")


def period_label(start: float, end: float, zone: tzinfo) -> str:
    """ "2026-12-07 14:00 and 15:00 UTC" (the date once when both ends share it)."""
    a, b = datetime.fromtimestamp(start, zone), datetime.fromtimestamp(end, zone)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')} and {tail} {a.tzname() or ''}".rstrip()


def lines_of(entries: Sequence[TimelineEntry]) -> list[Line]:
    """The captioned entries as lines, oldest first; consecutive entries with the same caption are one line."""
    out: list[Line] = []
    for e in entries:
        caption = " ".join((e.caption or "").split())
        if not caption:
            continue
        end = e.end_wall_time if e.end_wall_time is not None else e.wall_time
        if out and out[-1].text == caption and out[-1].entry.camera == e.camera:
            prev = out[-1]
            out[-1] = Line(prev.start, max(prev.end, end), caption, prev.entry)
            continue
        out.append(Line(e.wall_time, end, caption, e))
    return out


def render(line: Line, zone: tzinfo) -> str:
    return f"{clock(line.start, zone)}–{clock(line.end, zone)} {line.text}"


def chunks(texts: Sequence[str], budget: int) -> list[list[str]]:
    """Consecutive groups of texts of at most `budget` characters each (a longer text is cut to the budget)."""
    out: list[list[str]] = [[]]
    size = 0
    for t in texts:
        t = t[:budget]
        if out[-1] and size + len(t) + 1 > budget:
            out.append([])
            size = 0
        out[-1].append(t)
        size += len(t) + 1
    return [c for c in out if c]


def thin(texts: Sequence[str], budget: int, max_chunks: int) -> list[str]:
    """Texts evenly spread over `texts` (the first and the last kept) that fit in `max_chunks` chunks of `budget`."""
    if len(chunks(texts, budget)) <= max_chunks or len(texts) < 3:
        return list(texts)
    total = sum(len(t) + 1 for t in texts)
    keep = max(2, min(len(texts) - 1, int(len(texts) * budget * max_chunks / total)))
    while keep > 2:
        step = (len(texts) - 1) / (keep - 1)
        picked = [texts[round(i * step)] for i in range(keep)]
        if len(chunks(picked, budget)) <= max_chunks:
            return picked
        keep = max(2, int(keep * 0.9))
    return [texts[0], texts[-1]]


def map_prompt(camera: str, label: str, lines: Sequence[str]) -> str:
    return (
        f"Camera {camera}, between {label}. What it saw, one line per scene, oldest first:\n"
        + "\n".join(lines)
        + "\nSummarise what happened in this period in a few short lines, each starting with its time (HH:MM)."
    )


def reduce_prompt(camera: str, label: str, parts: Sequence[str]) -> str:
    return (
        f"Camera {camera}, between {label}. Summaries of consecutive parts of this period, oldest first:\n"
        + "\n".join(parts)
        + "\nCombine them into one summary of the period in a few short lines, each starting with its time (HH:MM)."
    )


def citations_of(lines: Sequence[Line], limit: int = MAX_CITATIONS) -> tuple[Citation, ...]:
    """The entries the lines came from, at most `limit`, spread evenly over them (first and last kept)."""
    if not lines:
        return ()
    if len(lines) <= limit:
        picked = list(lines)
    else:
        step = (len(lines) - 1) / (limit - 1)
        picked = [lines[round(i * step)] for i in range(limit)]
    return tuple(Citation.of(line.entry) for line in picked)


def nothing_recorded(camera: str, start: float, end: float, zone: tzinfo) -> str:
    return f"Nothing was recorded on camera {camera} between {period_label(start, end, zone)}."


class Summaries:
    """Summaries of timeline periods, with the cache of finished hours. One per daemon; used on the event loop (the
    store is read in a thread)."""

    def __init__(
        self,
        between: Between,
        *,
        zone: tzinfo,
        prompt_chars: int = PROMPT_CHARS,
        cache_size: int = CACHE_SIZE,
        parse: ParseWindow | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if prompt_chars < 200:
            raise ValueError(f"prompt_chars must be at least 200, got {prompt_chars}")
        self._between = between
        self.zone = zone
        self.prompt_chars = prompt_chars
        self._cache: OrderedDict[tuple[str, float], Summary] = OrderedDict()
        self._cache_size = cache_size
        self._now = now
        self._parse = parse or parse_window
        self.counters = {"summaries": 0, "cached": 0, "empty": 0, "generations": 0, "reduced": 0, "thinned": 0}

    async def window_of(self, text: str) -> tuple[float, float] | None:
        """The window a question asks a summary of (summary_window), None when it asks something else. The time
        expression is parsed in a thread (when.py: dateparser), and only for a question that asks a summary."""
        if not is_summary_question(text):
            return None
        try:
            return await asyncio.to_thread(summary_window, text, self._now(), self.zone, self._parse)
        except Exception as e:  # a time expression the parser chokes on: the question is answered as any other
            contain("summary.window", e, log, "the period of a summary question")
            return None

    def finished_hour(self, start: float, end: float) -> bool:
        """[start, end] is one whole hour of the zone's clock, wholly in the past."""
        if end - start != HOUR_S or end > self._now():
            return False
        t = datetime.fromtimestamp(start, self.zone)
        return t.minute == 0 and t.second == 0 and t.microsecond == 0

    async def summarize(
        self, camera: str, start: float, end: float, *, generate: Generate, on_text: OnText | None = None
    ) -> Summary:
        """The summary of [start, end] on `camera`. Raises what `generate` raises (a failed generation)."""
        if end <= start:
            raise ValueError(f"the period must end after it starts (from {start}, to {end})")
        self.counters["summaries"] += 1
        key = (camera, start)
        hour = self.finished_hour(start, end)
        if hour and (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            self.counters["cached"] += 1
            if on_text is not None and hit.text:
                on_text(hit.text)
            return Summary(camera, start, end, hit.text, hit.citations, cached=True, entries=hit.entries)
        entries = await asyncio.to_thread(self._between, camera, start, end, limit=MAX_ENTRIES)
        lines = lines_of(entries)
        label = period_label(start, end, self.zone)
        if not lines:
            self.counters["empty"] += 1
            text = nothing_recorded(camera, start, end, self.zone)
            if entries:
                text = (
                    f"{len(entries)} scene{'s' if len(entries) != 1 else ''} on camera {camera} between {label} "
                    "have no caption yet: nothing to summarise."
                )
            if on_text is not None:
                on_text(text)
            return Summary(camera, start, end, text, (), entries=len(entries))
        text, calls = await self._map_reduce(camera, label, [render(x, self.zone) for x in lines], generate, on_text)
        self.counters["generations"] += calls
        result = Summary(camera, start, end, text, citations_of(lines), entries=len(entries), generations=calls)
        if hour and all(e.caption for e in entries):  # an entry still to be captioned would change it: not cached
            self._cache[key] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    async def _map_reduce(
        self, camera: str, label: str, texts: list[str], generate: Generate, on_text: OnText | None
    ) -> tuple[str, int]:
        calls = 0
        prompt = map_prompt
        if len(chunks(texts, self.prompt_chars)) > MAX_MAP_CALLS:  # a long period: bounded work
            self.counters["thinned"] += 1
            texts = thin(texts, self.prompt_chars, MAX_MAP_CALLS)
        for _ in range(MAX_ROUNDS):
            groups = chunks(texts, self.prompt_chars)
            if len(groups) == 1:
                return await generate(prompt(camera, label, groups[0]), on_text), calls + 1
            self.counters["reduced"] += 1
            texts = []
            for g in groups:
                texts.append(" ".join((await generate(prompt(camera, label, g), None)).split()))
                calls += 1
            prompt = reduce_prompt
        # still too long after MAX_ROUNDS (a model that does not shorten): the last round's parts, cut to the budget
        kept = chunks(texts, self.prompt_chars)[0]
        return await generate(reduce_prompt(camera, label, kept), on_text), calls + 1

    def cache_len(self) -> int:
        return len(self._cache)
