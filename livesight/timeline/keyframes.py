"""Per camera: cuts the stream into timeline entries and picks each entry's keyframes (pure logic, no I/O).

`EntryTracker.update(pts, wall_time, rgb, kept, change, full=)` is fed every processed sampled frame (the RGB frame as
the model saw it, the number of tokens DTD kept, whether DTD kept it whole by rule) and the scene change the
detector declared on it, if any. An entry is closed — and returned, with the frames of its keyframes — when:

- a scene change arrives: the entry ends where the new scene starts (`change.pts`). The detector reports a change a
  frame or more after the frame it names (confirmation), so frames join an entry `TAIL` frames late (held meanwhile
  as references to frames the worker never changes): those at or after `change.pts` start the new scene's entry;
- activity on a still view has ended: the entry had an active frame (DTD kept more tokens than the view's noise:
  `Activity`), no frame has been active for QUIET_S since, and the entry has lasted at least MIN_ENTRY_S. It ends
  there, so two events minutes apart in one long still scene are two entries, each with its own "action"
  keyframe. Bounded: such an entry lasts at least MIN_ENTRY_S (at most one a minute per camera), and a view that
  stays busy (never quiet for QUIET_S) or stays still (no activity) is closed by the next rule only;
- the entry has lasted `chunk_s` of stream time: a long still scene becomes several entries (chunk 0, 1, 2, …), so a
  long static view still has entries to find;
- the camera stops (`close()`): nothing is lost on a clean stop.

Keyframes (at most 5 frames held per entry, plus the tail): "first" — the entry's first frame with content (a scene
that starts black or flat, a cut or a fade to black, takes it from the content that follows; the flat test is the
scene detector's: thumbnail + normalise(…, flat_level)); "action" — the content frame where DTD kept the most tokens
(the earliest of equals, at least one), among the frames other than the first and the last (so an entry keeps up
to 3 distinct pictures; the two most-kept are held, as the last one is known only at the close) and never a frame
DTD kept whole by rule (`full`: the stream's first frame, a new resolution, a keyframe refresh — its kept count is
no evidence of change); "last" — its last content frame. The same frame chosen for two roles is stored once (under
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
MIN_ENTRY_S = 60.0  # an entry that the end of activity closes has lasted at least this (one a minute at most)
QUIET_S = 5.0  # activity has ended when no frame was active for this long (stream time)
NOISE_FRAMES = 300  # recent frames (not kept whole, with content) whose kept tokens measure the view's noise
NOISE_MIN_FRAMES = 5  # no frame is active before this many measured the noise (a busy view's start is its noise)
NOISE_PERCENTILE = 10.0  # the view's noise floor: this percentile of their kept tokens
ACTIVE_TOKENS = 2  # a frame is active when it kept more than the floor plus this many tokens …
ACTIVE_SHARE = 0.01  # … and this share of the frame's tokens, and more than twice the floor
TOKEN_PX = 28  # one token per 28x28 px of the frame as the model saw it
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
    full: bool = False  # DTD kept it whole by rule: its kept count is no evidence of change
    active: bool = False  # DTD kept more than the view's noise (Activity)

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
    best: Shot | None = None  # the two content frames after the first, not kept whole, with the most kept tokens
    second: Shot | None = None  # (the best may turn out to be the last: then the action is the second)
    last: Shot | None = None  # the last content frame
    frames: int = 0
    active_pts: float | None = None  # the last active frame's

    def add(self, s: Shot) -> None:
        self.frames += 1
        if self.first_any is None:
            self.first_any = s
        if not s.content:
            return
        if s.active:
            self.active_pts = s.pts
        self.last = s
        if self.first is None:
            self.first = s
            return
        if s.full or s.kept <= 0:
            return  # kept whole by rule (or nothing kept): no evidence of change
        if self.best is None or s.kept > self.best.kept:
            self.second, self.best = self.best, s
        elif self.second is None or s.kept > self.second.kept:
            self.second = s

    @property
    def action(self) -> Shot | None:
        """The most-kept frame other than the first and the last (the earliest of equals)."""
        return self.best if self.best is not self.last else self.second

    def quiet_since(self, pts: float) -> bool:
        """Activity in this entry has ended: no active frame for QUIET_S before `pts`."""
        return self.active_pts is not None and pts - self.active_pts >= QUIET_S - EPS

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
class Activity:
    """Is a frame active — did DTD keep more tokens than the view's still-view noise? The noise floor is a low
    percentile of the kept tokens of the camera's last NOISE_FRAMES frames (frames kept whole by rule and flat frames
    left out); a frame is active when it kept more than twice the floor and more than the floor plus
    max(ACTIVE_TOKENS, ACTIVE_SHARE of its tokens), and none is before NOISE_MIN_FRAMES were measured. A view that is
    always busy raises its own floor: steady motion (a tree in the wind) is its noise, not an event."""

    recent: deque[int] = field(default_factory=lambda: deque(maxlen=NOISE_FRAMES))

    def floor(self) -> float:
        return float(np.percentile(np.fromiter(self.recent, np.int64), NOISE_PERCENTILE)) if self.recent else 0.0

    def judge(self, kept: int, rgb: np.ndarray, *, full: bool, content: bool) -> bool:
        if full or not content:
            return False
        floor = self.floor()
        tokens = max(1, (rgb.shape[0] // TOKEN_PX) * (rgb.shape[1] // TOKEN_PX))
        margin = max(ACTIVE_TOKENS, ACTIVE_SHARE * tokens)
        active = len(self.recent) >= NOISE_MIN_FRAMES and kept > max(2.0 * floor, floor + margin)
        self.recent.append(kept)
        return active


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
    _activity: Activity = field(default_factory=Activity)

    def picture(self, rgb: np.ndarray) -> np.ndarray | None:
        """The detector's view of a frame: its normalised thumbnail, None when flat."""
        return normalise(thumbnail(rgb), self.flat_level)

    def update(
        self,
        pts: float,
        wall_time: float,
        rgb: np.ndarray,
        kept: int,
        change: SceneChange | None = None,
        *,
        full: bool = False,
    ) -> list[ClosedEntry]:
        """One processed frame (and the scene change declared on it) → the entries it closed (0, 1 or 2). `full`:
        DTD kept it whole by rule (`DTDStep.full`)."""
        out: list[ClosedEntry] = []
        if change is not None:
            while self._tail and self._tail[0].pts < change.pts - EPS:  # the old scene's frames
                out += self._commit(self._tail.popleft())
            out += self._close(change.pts, change.wall_time)
            self.scene = change.scene
            self._start = (change.pts, change.wall_time)
        z = self.picture(rgb)
        active = self._activity.judge(int(kept), rgb, full=full, content=z is not None)
        self._tail.append(Shot(pts, wall_time, rgb, int(kept), z, full, active))
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
        if cur is not None and (
            s.pts - cur.pts >= self.chunk_s - EPS
            or s.pts < cur.pts - EPS
            or (s.pts - cur.pts >= MIN_ENTRY_S - EPS and cur.quiet_since(s.pts))
        ):
            # lasted chunk_s (or the stream's clock went back: a restarted source), or its activity ended (quiet
            # QUIET_S) and it lasted MIN_ENTRY_S: the next chunk starts here
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
