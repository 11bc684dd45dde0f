"""Timeline rows ↔ TimelineEntry: the columns the store and search read (`FROM timeline t`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from livesight.types import Keyframe, TimelineEntry

COLUMNS = (
    "t.rowid, t.id, t.camera, t.scene, t.chunk, t.pts, t.wall_time, t.end_pts, t.end_wall_time, t.caption,"
    " t.keyframes, t.watches, t.answers, t.caption_state"
)
ROWID, WALL_TIME = 0, 6  # positions in COLUMNS


def entry_from_row(r: Sequence[Any]) -> TimelineEntry:
    """A row of `SELECT {COLUMNS} FROM timeline t` → TimelineEntry."""
    try:
        frames = tuple(Keyframe(str(k["role"]), float(k["pts"]), float(k["wall_time"])) for k in json.loads(r[10]))
    except (ValueError, TypeError, KeyError):
        frames = ()
    return TimelineEntry(
        id=r[1],
        camera=r[2],
        scene=r[3],
        chunk=r[4],
        pts=r[5],
        wall_time=r[6],
        end_pts=r[7],
        end_wall_time=r[8],
        caption=r[9],
        keyframes=frames,
        watches=lines(r[11]),
        answers=lines(r[12]),
        caption_state=r[13],
    )


def lines(text: str | None) -> tuple[str, ...]:
    """Newline-joined texts → unique, in order."""
    return tuple(dict.fromkeys(t for t in (text or "").split("\n") if t))
