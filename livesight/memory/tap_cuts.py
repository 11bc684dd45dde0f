"""Hard cuts and black-outs seen at the decoder's rate (`scenes.cut_tap_fps`), judged in the camera's decode thread.

At the model's 2 fps a hand-held or action shot changes as much between two samples as a cut does (bikes.mp4: 0.6–0.9
on the thumbnail distance within shots, 0.8–0.9 at the cuts), so no test on sampled frames alone can tell them apart.
0.1 s apart, the same shot changes little and a cut still replaces the picture. The camera's decode thread offers
every decoded frame to its FrameTap, which scales one per 1/cut_tap_fps to 64x48 and hands it to `TapCuts.push`:

- cut: the change from the previous tap frame after the best small shift rises `threshold` MAD-std above its own
  recent history (at least `min_ratio` x its median, at least `cut_change`) — the sampled test's robust rule; or,
  in footage that moves a lot, the colour histogram jumps (by `hist_change`, robustly above its own history) and
  the picture changed as much as a cut changes it (a whip pan keeps its colours, a cut does not);
- flat: the picture goes flat (black, white, uniform: thumbnail spread < `flat_level`) after content.

A candidate is confirmed or rejected by the next tap frame (0.1 s later at 10 fps, not 0.5 s at the model's 2 fps):
a cut must stay away from the old picture (a one- or two-frame flash comes back: rejected), a flat picture must stay
flat. Confirmed events go to `events`, which the scene detector drains on the model worker's thread
(`take_events`: deque append/popleft are atomic, no lock). The signal `push` returns drives event-triggered sampling
(`TapSignal`): HOLD the candidate frame, then TAKE it (the camera samples it at once, outside its regular ticks) or
DROP it. At most one TAKE per `min_scene_s` of stream time, so event samples stay rare.

The detector still decides (scene length, the sampled picture must have changed too), so a tap event alone never
declares a boundary. Bounded: the history holds `window` values, the events EVENTS entries.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from livesight.config import SceneConfig
from livesight.memory.pictures import distance, hist_distance, histogram, moved_distance, normalise, thumbnail
from livesight.types import TapSignal

TAP_SIZE = (64, 48)  # width, height of the tap's frames: 16x16 thumbnail cells of 4x3 pixels
TAP_INTERPOLATION = "AREA"  # the decoder scales by block means, like the thumbnails
EVENTS = 64


@dataclass(frozen=True, slots=True)
class TapEvent:
    """A confirmed event on the tap: the picture was replaced (`cut`) or went flat (`flat`) at pts."""

    pts: float
    wall_time: float
    kind: str  # cut | flat
    score: float
    confirmed_wall: float = 0.0  # time.time() when the tap's next frame confirmed it


def robust_cut_score(d: float, history: deque[float], cfg: SceneConfig, min_history: int = 3) -> float | None:
    """The hard-cut test shared by sampled and tap frames: d against the robust statistics of `history`."""
    if d < cfg.cut_change:
        return None
    h = np.fromiter(history, np.float32)
    if len(h) < min_history:
        base = float(h.max()) if len(h) else 0.0
        return d / max(base, 1e-3) if d >= cfg.min_ratio * base else None
    return robust_score(d, h, cfg)


def robust_score(v: float, history: np.ndarray, cfg: SceneConfig) -> float | None:
    """How far v stands out of history: (v - median) / (1.4826 MAD), when that is at least `threshold` and v at
    least `min_ratio` x the median (median/MAD: an outlier in the history does not mask the next one)."""
    med = float(np.median(history))
    spread = 1.4826 * float(np.median(np.abs(history - med)))
    if v < cfg.min_ratio * med:
        return None
    score = (v - med) / max(spread, 0.02)
    return score if score >= cfg.threshold else None


@dataclass(slots=True)
class _Candidate:
    pts: float
    wall_time: float
    kind: str
    score: float
    ref: np.ndarray | None  # cut: the old picture (the new one must stay away from it)
    pic: np.ndarray | None  # cut: the candidate's picture
    held: bool
    ref_hist: np.ndarray | None = None  # cut: the old picture's colour histogram
    pic_hist: np.ndarray | None = None  # cut: the candidate's  # the camera holds the frame for an event sample


class TapCuts:
    """The tap's judge (streaming/tap.py's TapJudge): `push` on the decode thread, `take_events` on the worker's."""

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None  # the last content picture
        self._flat = False  # the last tap frame was flat
        # frame-to-frame changes at the tap's rate, cuts left out; `window` of them (1.6 s at 10 fps: a longer one
        # mixes the busy shot before a cut into a calm one's statistics — bikes.mp4's cut at 5.48 s scores 2 with 32)
        self._m: deque[float] = deque(maxlen=cfg.window)
        self._h: deque[float] = deque(maxlen=cfg.window)  # frame-to-frame colour histogram changes, cuts left out
        self._prev_hist: np.ndarray | None = None
        self._cand: _Candidate | None = None
        self._last_take = -math.inf
        self.events: deque[TapEvent] = deque(maxlen=EVENTS)
        self.frames = 0
        self.rejected = 0  # candidates the next tap frame rejected (flashes, glitches)
        self.held = 0  # candidates whose frame the camera held (HOLD)
        self.taken = 0  # held frames sampled at the tap's confirmation (TAKE): event samples, or regular ticks

    # ---- decode thread ------------------------------------------------------------------------------------

    def push(self, pts: float, wall_time: float, small: np.ndarray) -> TapSignal:
        """Judge one tap frame ([h, w, 3] uint8). The signal says what the camera does with the frame it decoded."""
        self.frames += 1
        z = normalise(thumbnail(small), self.cfg.flat_level)
        if self._cand is not None:
            return self._resolve(z, small)
        if z is None:
            was_flat, self._flat = self._flat, True
            if was_flat or self._prev is None:  # still flat, or no content yet (a stream starting black)
                return TapSignal.NONE
            return self._candidate(_Candidate(pts, wall_time, "flat", 0.0, None, None, False))
        self._flat = False
        hist = histogram(small)
        prev, self._prev = self._prev, z
        prev_hist, self._prev_hist = self._prev_hist, hist
        if prev is None or prev_hist is None:
            return TapSignal.NONE
        cfg = self.cfg
        d = distance(z, prev)
        m = moved_distance(z, prev) if d >= cfg.cut_change else d
        h = hist_distance(hist, prev_hist)
        score = robust_cut_score(m, self._m, cfg)
        if score is None and h >= cfg.hist_change and m >= cfg.cut_change and len(self._h) >= 3:
            score = robust_score(h, np.fromiter(self._h, np.float32), cfg)
        if score is None:
            self._m.append(m)
            self._h.append(h)
            return TapSignal.NONE
        cand = _Candidate(pts, wall_time, "cut", score, prev, z, False, prev_hist, hist)
        return self._candidate(cand)  # a cut stays out of the statistics

    def _candidate(self, c: _Candidate) -> TapSignal:
        c.held = c.pts - self._last_take >= self.cfg.min_scene_s - 1e-6  # event samples: one per min_scene_s at most
        self._cand = c
        self.held += c.held
        return TapSignal.HOLD if c.held else TapSignal.NONE

    def _resolve(self, z: np.ndarray | None, small: np.ndarray) -> TapSignal:
        """The tap frame after a candidate confirms it (the new picture stays) or rejects it (a flash)."""
        c, self._cand = self._cand, None
        assert c is not None
        cfg = self.cfg
        hist = histogram(small) if z is not None else None
        if c.kind == "flat":
            confirmed = z is None
        else:
            assert c.ref is not None and c.ref_hist is not None
            confirmed = (
                z is None
                or moved_distance(z, c.ref) >= 0.5 * cfg.cut_change
                or hist_distance(hist, c.ref_hist) >= 0.5 * cfg.hist_change  # type: ignore[arg-type]
            )
        self._flat = z is None
        if z is not None:  # its change from the picture before it (the new one, or the old one after a flash)
            assert hist is not None
            new = confirmed and c.pic is not None
            base, base_hist = (c.pic, c.pic_hist) if new else (c.ref, c.ref_hist)
            if base is not None:
                d = distance(z, base)
                self._m.append(moved_distance(z, base) if d >= cfg.cut_change else d)
            if base_hist is not None:
                self._h.append(hist_distance(hist, base_hist))
            self._prev, self._prev_hist = z, hist
        if not confirmed:
            self.rejected += 1
            return TapSignal.DROP if c.held else TapSignal.NONE
        self.events.append(TapEvent(c.pts, c.wall_time, c.kind, c.score, time.time()))
        if not c.held:
            return TapSignal.NONE
        self._last_take = c.pts
        self.taken += 1
        return TapSignal.TAKE

    # ---- model worker thread ------------------------------------------------------------------------------

    def take_events(self) -> list[TapEvent]:
        """The confirmed events since the last call, oldest first."""
        out = []
        while self.events:
            out.append(self.events.popleft())
        return out
