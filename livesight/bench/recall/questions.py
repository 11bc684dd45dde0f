"""Questions about the planted events, with their known answers, and how an answer is scored.

    qs = build_questions(world, now)        # one per event; about half with a time expression
    hit(entry, event, world)                # → "seen" | "overlap" | None

Each question is asked on the event's camera (as a user asks a camera) at `now` (the end of the stream). Kinds:

  without a time (the thing is unique on that camera)   "When did the red van come by?", "Was there a blue box at
                                                         the gate?", "When was the card saying CLOSED shown?"
  with a time expression (any event)                     "What was at the gate around 10:40?", "What happened 20
                                                         minutes ago at the yard?", "Was there anything at the gate
                                                         between 9:31 and 9:34?", "Did a red van come by this
                                                         morning?", "What did the sign at the door say at 10:05?"

The known answer is the event's entry: an entry of that camera whose time overlaps the event. It counts as "seen"
when its caption also names the thing (the keyframes the oracle captioned show it: a user would see it), as
"overlap" when only its time is right (the right moment, but its keyframes missed the thing).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from livesight.bench.recall.stream import CAMERAS, Event, World
from livesight.types import TimelineEntry


@dataclass(frozen=True)
class Question:
    text: str
    camera: str  # asked on this camera
    event: str  # the event whose entry is the answer
    kind: str  # a template name (see module doc)
    timed: bool  # carries a time expression
    hard: str | None = None  # the event's hard case, if any


def clock(world: World, t: float) -> str:
    """Stream seconds → "HH:MM" on the wall clock (the stream's zone is UTC)."""
    return dt.datetime.fromtimestamp(world.epoch + t, dt.UTC).strftime("%H:%M")


def _untimed(e: Event, place: str, n: int) -> tuple[str, str]:
    thing = e.thing
    if thing.shape == "card":
        forms = (f"When was the card saying {thing.word} shown?", f"Did anyone hold up a {thing.word} sign?")
    else:
        forms = (
            f"When did the {thing.label} come by?",
            f"Was there {_a(thing.label)} at {place}?",
            f"Show me the {thing.label}.",
        )
    return forms[n % len(forms)], "no time: " + ("card" if thing.shape == "card" else "thing")


def _timed(e: Event, world: World, now: float, n: int) -> tuple[str, str]:
    place = CAMERAS[e.camera]
    mid = (e.start + e.end) / 2
    ago_min = round((now - (world.epoch + mid)) / 60)
    forms: list[tuple[str, str]] = [(f"What was at {place} around {clock(world, mid)}?", "around HH:MM")]
    if 3 <= ago_min <= 60:
        forms.append((f"What happened {ago_min} minutes ago at {place}?", "N minutes ago"))
    lo, hi = clock(world, e.start - 60), clock(world, e.end + 60)
    forms.append((f"Was there anything at {place} between {lo} and {hi}?", "between HH:MM and HH:MM"))
    if e.thing.shape == "card":
        forms.append((f"What did the sign at {place} say at {clock(world, mid)}?", "at HH:MM (card)"))
    else:
        forms.append((f"Did {_a(e.thing.label)} come by this morning?", "this morning + thing"))
    return forms[n % len(forms)]


def _a(label: str) -> str:
    return ("an " if label[0] in "aeiou" else "a ") + label


def build_questions(world: World, now: float) -> list[Question]:
    """One question per event, alternating: timed for even-numbered events (or when the thing is not unique on
    its camera, so only a time can point at it), untimed for the others."""
    per_cam = Counter((e.camera, e.thing.label) for e in world.events)
    out: list[Question] = []
    for i, e in enumerate(world.events):
        unique = per_cam[(e.camera, e.thing.label)] == 1
        if i % 2 == 0 or not unique:
            text, kind = _timed(e, world, now, i // 2)
            out.append(Question(text, e.camera, e.id, kind, True, e.hard))
        else:
            text, kind = _untimed(e, CAMERAS[e.camera], i // 2)
            out.append(Question(text, e.camera, e.id, kind, False, e.hard))
    return out


def hit(entry: TimelineEntry, event: Event, world: World) -> str | None:
    """How `entry` answers a question about `event`: "seen" (right camera and time, its caption names the thing),
    "overlap" (right camera and time only) or None."""
    if entry.camera != event.camera:
        return None
    end = entry.end_wall_time if entry.end_wall_time is not None else entry.wall_time
    if end < world.epoch + event.start or entry.wall_time > world.epoch + event.end:
        return None
    return "seen" if event.thing.label in (entry.caption or "") else "overlap"
