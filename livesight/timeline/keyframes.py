"""Per camera: cuts the stream into timeline entries and picks each entry's keyframes (pure logic, no I/O).

`EntryTracker.update(pts, wall_time, rgb, kept, change)` is fed every processed sampled frame (the RGB frame as the
model saw it, the number of tokens DTD kept) and the scene change the detector declared on it, if any. An entry is
closed — and returned, with the frames of its keyframes — when:

- a scene change arrives: the entry ends where the new scene starts (`change.pts`). The detector reports a change a
  frame or more after the frame it names (confirmation), so frames join an entry `TAIL` frames late (held meanwhile
  as references to frames the worker never changes): those at or after `change.pts` start the new scene's entry;
- the entry has lasted `chunk_s` of stream time: a long still scene becomes several entries (chunk 0, 1, 2, …), so a
  long static view still has entries to find;
- the camera stops (`close()`): nothing is lost on a clean stop.

Keyframes (at most 3 frames held per entry, plus the tail): "first" — the entry's first frame with content (a scene
that starts black or flat, a cut or a fade to black, takes it from the content that follows; the flat test is the
scene detector's: thumbnail + normalise(…, flat_level)); "action" — the content frame where DTD kept the most tokens
(the earliest of equals); "last" — its last content frame. The same frame chosen for two roles is stored once (under
the first role), and so is the same picture (normalised thumbnails within SAME_CELL in every cell: a still view's
first and last frames differ by sensor noise only). An entry without any content (all black) keeps its first frame
as "first", so every entry has 1–3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from livesight.ids import new_id
from livesight.memory.pictures import normalise, thumbnail
from livesight.types import Keyframe, SceneChange, TimelineEntry

TAIL = 4  # recent frames held: a scene change is reported a frame or more after the frame it starts at
EPS = 1e-6
SAME_CELL = 0.15  # two pictures whose normalised thumbnails differ by less than this in every cell are the same


def entry_id() -> str:
    return new_id("tl_")


def _same_picture(a: Shot, b: Shot) -> bool:
    """A still view's first and last frames (sensor noise, a light change): one picture, stored once. A small
    object that came or went changes a cell by far more than SAME_CELL, so its frame stays."""
    return a.z is not None and b.z is not None and float(np.abs(a.z - b.z).max()) < SAME_CELL


@dataclass(frozen=True, slots=True)
class Shot:
    """One processed sampled frame as the tracker sees it."""

    pts: float
    wall_time: float
    rgb: np.ndarray  # [H, W, 3] uint8, as the model saw it (never changed after it was made)
    kept: int  # tokens DTD kept
    z: np.ndarray | None  # its normalised 16x16 thumbnail (memory/pictures.py); None: flat (black, white, uniform)

    @property
    def content(self) -> bool:
        return self.z is not None


@dataclass(frozen=True, slots=True)
class ClosedEntry:
    """A closed entry and the frames of its keyframes (`frames[i]` is `entry.keyframes[i]`), to be encoded."""

    entry: TimelineEntry
    frames: tuple[np.ndarray, ...]


@dataclass(slots=True)
class _Open:
    scene: int
    chunk: int
    pts: float
    wall_time: float
    first_any: Shot | None = None  # the first frame, content or not (an all-black entry keeps it)
    first: Shot | None = None  # the first content frame
    action: Shot | None = None
    last: Shot | None = None  # the last content frame
    frames: int = 0

    def add(self, s: Shot) -> None:
        self.frames += 1
        if self.first_any is None:
            self.first_any = s
        if not s.content:
            return
        if self.first is None:
            self.first = s
        if self.action is None or s.kept > self.action.kept:
            self.action = s
        self.last = s

    def keyframes(self) -> list[tuple[str, Shot]]:
        chosen = [("first", self.first or self.first_any), ("action", self.action), ("last", self.last)]
        out: list[tuple[str, Shot]] = []
        for role, shot in chosen:
            if shot is None or any(s is shot or _same_picture(s, shot) for _, s in out):
                continue  # the same frame (or picture) twice: stored once, under its first role
            out.append((role, shot))
        out.sort(key=lambda rs: rs[1].pts)
        return out


@dataclass
class EntryTracker:
    """One camera's open entry. Used by one thread at a time (the model worker's unit holding the camera).

    Frames are committed to the open entry TAIL frames late: a scene change names a frame up to a few frames back,
    and the frames at or after it must start the new entry, not end the old one. Until then they wait in the tail."""

    camera: str
    scene: int = 1  # the scene the camera's first frame starts
    chunk_s: float = 300.0
    flat_level: float = 6.0
    new_id: Callable[[], str] = entry_id
    closed: int = 0  # entries closed so far
    _open: _Open | None = None
    _start: tuple[float, float] | None = None  # (pts, wall_time) where the next entry starts (a scene change's)
    _tail: deque[Shot] = field(default_factory=deque)

    def picture(self, rgb: np.ndarray) -> np.ndarray | None:
        """The detector's view of a frame: its normalised thumbnail, None when flat."""
        return normalise(thumbnail(rgb), self.flat_level)

    def update(
        self, pts: float, wall_time: float, rgb: np.ndarray, kept: int, change: SceneChange | None = None
    ) -> list[ClosedEntry]:
        """One processed frame (and the scene change declared on it) → the entries it closed (0, 1 or 2)."""
        out: list[ClosedEntry] = []
        if change is not None:
            while self._tail and self._tail[0].pts < change.pts - EPS:  # the old scene's frames
                out += self._commit(self._tail.popleft())
            out += self._close(change.pts, change.wall_time)
            self.scene = change.scene
            self._start = (change.pts, change.wall_time)
        self._tail.append(Shot(pts, wall_time, rgb, int(kept), self.picture(rgb)))
        while len(self._tail) > TAIL:
            out += self._commit(self._tail.popleft())
        return out

    def close(self) -> list[ClosedEntry]:
        """The camera stops: the open entry ends at its last frame (the frames still held may close a chunk too)."""
        last = self._tail[-1] if self._tail else None
        out: list[ClosedEntry] = []
        while self._tail:
            out += self._commit(self._tail.popleft())
        if last is not None:
            out += self._close(last.pts, last.wall_time)
        return out

    def _commit(self, s: Shot) -> list[ClosedEntry]:
        out: list[ClosedEntry] = []
        cur = self._open
        if cur is not None and (s.pts - cur.pts >= self.chunk_s - EPS or s.pts < cur.pts - EPS):
            # lasted chunk_s (or the stream's clock went back: a restarted source): the next chunk starts here
            out += self._close(s.pts, s.wall_time)
            self._open = _Open(cur.scene, cur.chunk + 1, s.pts, s.wall_time)
        if self._open is None:
            pts, wall = self._start if self._start is not None else (s.pts, s.wall_time)
            self._start = None
            self._open = _Open(self.scene, 0, min(pts, s.pts), min(wall, s.wall_time))
        self._open.add(s)
        return out

    def _close(self, end_pts: float, end_wall: float) -> list[ClosedEntry]:
        cur, self._open = self._open, None
        if cur is None or cur.first_any is None:
            return []
        picks = cur.keyframes()
        entry = TimelineEntry(
            id=self.new_id(),
            camera=self.camera,
            scene=cur.scene,
            chunk=cur.chunk,
            pts=cur.pts,
            wall_time=cur.wall_time,
            end_pts=max(end_pts, cur.pts),
            end_wall_time=max(end_wall, cur.wall_time),
            caption=None,
            keyframes=tuple(Keyframe(role, s.pts, s.wall_time) for role, s in picks),
        )
        self.closed += 1
        return [ClosedEntry(entry, tuple(s.rgb for _, s in picks))]
