"""A question → the past timeline entries to recall into its answer, and their citations.

    Recaller(store, cfg).recall(question, camera=…, now=…, live_start=…) → Recall

What is recalled (at most `memory.recall.max_scenes` entries of the asked camera):
  - the question's time window (when.py: "this morning", "10 minutes ago", …) and the full-text match of its content
    words (store.search, BM25): the best matches in the window; a window with no matching words gives the entries in
    it by time (the newest); matching words without a window give the best matches at any time;
  - only entries no longer in the live window (ended before `live_start`): what the model still sees is not recalled;
  - nothing for a question about the present with no time in it ("what is happening now?"), nor for one with neither
    a time nor a match.

A Recall holds time-stamped caption lines (local time in the configured zone, "[14:03:10–14:05:02] a red van stops at
the gate"), keyframe images (`memory.recall.keyframes_per_scene` of each entry, each with its time as text) and the
citations `response.done` carries. `fit(budget)` makes it count against the prompt budget: images go first, then the
oldest lines (their citations with them). `segment()` is what the model is given (model/backend.py: Recalled).

Every call does blocking work (dateparser, SQLite, JPEG files): run it in a thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from livesight.config import RecallConfig
from livesight.model.backend import Recalled, RecalledImage
from livesight.timeline.search import STOP_WORDS as SEARCH_STOP_WORDS
from livesight.timeline.when import Window, parse_window, zone_of
from livesight.types import Citation, Keyframe, TimelineEntry, TimelinePage, TimelineQuery

log = logging.getLogger(__name__)

CAPTION_CHARS = 240
MAX_WORDS = 12  # content words of one question sent to the search
INTRO = "Recalled from this camera's timeline (earlier scenes, no longer in view), oldest first:"
# words that say nothing about what to find (question words, time words, the verbs of asking about a camera)
_STOP_WORDS = """
    a about above after again ago all am an and any anyone anything are around as at be been before between both but
    by can could did do does doing done during each earlier for from had happen happened happening happens has have
    having he her here hers him his how i if in into is it its just last like me more most my near night no nor not
    now of off on once only or other our out over past right same see seen she should show since so some someone
    something such than that the their them then there these they this those through to today tonight too under until
    up very was we were what whatever when where which while who whom why will with would yesterday you your
    morning afternoon evening minute minutes hour hours second seconds day days week weeks o clock pm tell anybody
    camera view scene scenes moment time times currently recently still ever come came go went
"""
_STOP = frozenset(_STOP_WORDS.split())
_PRESENT = re.compile(r"\b(?:now|currently|at the moment|right now|at present|live)\b")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_ROLE_ORDER = {"action": 0, "first": 1, "last": 2}


class TimelineReader(Protocol):
    """What recall reads of the timeline store (timeline/store.py: TimelineStore)."""

    def search(self, query: TimelineQuery) -> TimelinePage: ...

    def keyframe_bytes(self, entry_id: str, index: int) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class RecallImage:
    """One recalled keyframe: its entry, its time and its JPEG."""

    entry_id: str
    wall_time: float
    label: str  # its time as text, e.g. "Keyframe at 14:03:40:"
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class Recall:
    """What one question recalls. Lines and images oldest first; citations in the order of the lines."""

    window: Window | None = None
    lines: tuple[str, ...] = ()
    images: tuple[RecallImage, ...] = ()
    citations: tuple[Citation, ...] = ()
    parse_ms: float = 0.0  # the time expression's parse (dateparser)
    entry_ids: tuple[str, ...] = field(default=(), repr=False)  # of the lines, in their order

    @property
    def empty(self) -> bool:
        return not self.lines

    def text(self) -> str:
        return INTRO + "\n" + "\n".join(self.lines) if self.lines else ""

    def fit(self, budget_tokens: int, image_tokens: Callable[[RecallImage], int]) -> Recall:
        """The part of this recall that fits `budget_tokens` (its text and images): images are dropped first (the
        last ones first), then the oldest lines with their citations and images."""
        imgs = list(self.images)
        lines = list(zip(self.lines, self.entry_ids, self.citations, strict=True))

        def cost() -> int:
            text = INTRO + "\n" + "\n".join(x[0] for x in lines) if lines else ""
            return text_tokens(text) + sum(image_tokens(i) + text_tokens(i.label) for i in imgs)

        while imgs and cost() > budget_tokens:
            imgs.pop()
        while lines and cost() > budget_tokens:
            _line, gone, _cit = lines.pop(0)
            imgs = [i for i in imgs if i.entry_id != gone]
        if len(imgs) == len(self.images) and len(lines) == len(self.lines):
            return self
        return replace(
            self,
            lines=tuple(x[0] for x in lines),
            entry_ids=tuple(x[1] for x in lines),
            citations=tuple(x[2] for x in lines),
            images=tuple(imgs),
        )

    def segment(self) -> Recalled | None:
        """What the model is given: the lines as text, then each image after its time; None when empty."""
        if self.empty:
            return None
        return Recalled(self.text(), tuple(RecalledImage(i.label, i.jpeg) for i in self.images))


NOTHING = Recall()


def text_tokens(text: str) -> int:
    """A tokenizer-free estimate (~4 characters a token, as BPE tokenizers give English)."""
    return (len(text) + 3) // 4


def content_words(question: str) -> list[str]:
    """The words of a question worth searching for (no question words, time words, numbers alone, nor the search's
    own stop words: every word returned is one the search takes)."""
    out: list[str] = []
    for w in _WORD.findall(question.lower()):
        w = w.strip("'-")
        if len(w) < 2 or w in _STOP or w in SEARCH_STOP_WORDS or w.isdigit() or w in out:
            continue
        out.append(w)
    return out[:MAX_WORDS]


class Recaller:
    def __init__(self, store: TimelineReader, cfg: RecallConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.zone = zone_of(cfg.timezone)
        self.recalls = 0  # questions that recalled something
        self.parse_ms_total = 0.0
        self.questions = 0

    def recall(
        self, question: str, *, camera: str, now: float | None = None, live_start: float | None = None
    ) -> Recall:
        """The entries of `camera` to recall for `question` asked at `now`; `live_start`: wall time where the live
        window starts (entries that ended after it are still in view: not recalled). Blocking: call it in a thread."""
        if not self.cfg.enabled or self.cfg.max_scenes <= 0:
            return NOTHING
        now = time.time() if now is None else now
        t0 = time.perf_counter()
        window = parse_window(question, now, self.zone)
        parse_ms = (time.perf_counter() - t0) * 1000
        self.questions += 1
        self.parse_ms_total += parse_ms
        words = content_words(question)
        if window is None and (not words or _PRESENT.search(question.lower())):
            return replace(NOTHING, parse_ms=parse_ms)
        horizon = now if live_start is None else min(now, live_start)
        entries = self._entries(camera, window, words, horizon)
        if not entries:
            return replace(NOTHING, window=window, parse_ms=parse_ms)
        self.recalls += 1
        return self._build(entries, window, now, parse_ms)

    def _entries(self, camera: str, window: Window | None, words: list[str], horizon: float) -> list[TimelineEntry]:
        n = self.cfg.max_scenes
        start = window.start if window is not None else None
        end = min(window.end, horizon) if window is not None else horizon
        if start is not None and start >= end:
            return []

        def ask(text: str | None) -> list[TimelineEntry]:
            q = TimelineQuery(text=text, cameras=(camera,), start=start, end=end, limit=4 * n)
            hits = self.store.search(q).hits
            out = [h.entry for h in hits if h.entry.end_wall_time is not None and h.entry.end_wall_time <= horizon]
            return out[:n]

        found = ask(" ".join(words)) if words else []
        if not found and window is not None:
            found = ask(None)  # the window by time: its newest entries
        return sorted(found, key=lambda e: e.wall_time)

    def _build(self, entries: list[TimelineEntry], window: Window | None, now: float, parse_ms: float) -> Recall:
        lines, images, cites = [], [], []
        for e in entries:
            lines.append(f"[{self.span(e, now)}] {self._caption(e)}")
            cites.append(Citation.of(e))
            for index, kf in self._keyframes(e):
                jpeg = self.store.keyframe_bytes(e.id, index)
                if jpeg is None:  # deleted by retention meanwhile: the line stays, the picture does not
                    continue
                images.append(RecallImage(e.id, kf.wall_time, f"Keyframe at {self.clock(kf.wall_time, now)}:", jpeg))
        return Recall(
            window=window,
            lines=tuple(lines),
            images=tuple(images),
            citations=tuple(cites),
            parse_ms=parse_ms,
            entry_ids=tuple(e.id for e in entries),
        )

    def _keyframes(self, e: TimelineEntry) -> list[tuple[int, Keyframe]]:
        k = self.cfg.keyframes_per_scene
        ranked = sorted(enumerate(e.keyframes), key=lambda p: (_ROLE_ORDER.get(p[1].role, 3), p[0]))[:k]
        return sorted(ranked, key=lambda p: p[1].wall_time)

    @staticmethod
    def _caption(e: TimelineEntry) -> str:
        text = (e.caption or "(no caption yet)").strip().replace("\n", " ")
        return text[:CAPTION_CHARS]

    def clock(self, t: float, now: float) -> str:
        """Local time in the configured zone; the date too when it is not now's day."""
        d = dt.datetime.fromtimestamp(t, self.zone)
        today = dt.datetime.fromtimestamp(now, self.zone).date()
        return d.strftime("%H:%M:%S") if d.date() == today else d.strftime("%Y-%m-%d %H:%M:%S")

    def span(self, e: TimelineEntry, now: float) -> str:
        end = e.end_wall_time if e.end_wall_time is not None else e.wall_time
        a = self.clock(e.wall_time, now)
        b = dt.datetime.fromtimestamp(end, self.zone).strftime("%H:%M:%S")
        return f"{a}–{b}"
