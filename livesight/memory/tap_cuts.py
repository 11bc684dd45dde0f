"""Hard cuts seen at the decoder's rate (`scenes.cut_tap_fps`): the evidence the `dtd` detector's cut test lacks in
footage that moves in every shot.

At the model's 2 fps a hand-held or action shot changes as much between two samples as a cut does (bikes.mp4: 0.6–0.9
on the thumbnail distance within shots, 0.8–0.9 at the cuts), so no test on sampled frames alone can tell them apart.
0.1 s apart, the same shot changes little and a cut still replaces the picture. The camera's decode thread offers
every decoded frame to a FrameTap, which keeps tiny frames (64x48 from the decoder's scaler) at `cut_tap_fps`; on each
sampled frame the detector drains the tap through TapCuts, which runs the same robust test as the sampled cut test
(the change after the best small shift rises `threshold` MAD-std above its own recent history, at least `min_ratio`
x its median and at least `cut_change`) and remembers where it fired. The sampled detector then asks: did a cut
happen on the tap between my previous sampled frame and this one? It still decides (scene length, confirmation by
the next sampled frame, flashes), so a tap spike alone never declares a boundary.

Bounded: the tap holds at most its maxlen frames, the history `window` values, the remembered cuts CUTS entries.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np

from livesight.config import SceneConfig
from livesight.memory.pictures import distance, moved_distance, normalise, thumbnail

TAP_SIZE = (64, 48)  # width, height of the tap's frames: 16x16 thumbnail cells of 4x3 pixels
CUTS = 64


TAP_INTERPOLATION = "AREA"  # the decoder scales by block means, like the thumbnails


class TapSource(Protocol):
    """What TapCuts reads (streaming/tap.py's FrameTap): the (pts, wall_time, [h, w, 3] uint8) frames since the
    last call."""

    def drain(self) -> list[tuple[float, float, np.ndarray]]: ...


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


class TapCuts:
    def __init__(self, cfg: SceneConfig, tap: TapSource) -> None:
        self.cfg = cfg
        self.tap = tap
        self._prev: np.ndarray | None = None
        # frame-to-frame changes at the tap's rate, cuts left out; `window` of them (1.6 s at 10 fps: a longer one
        # mixes the busy shot before a cut into a calm one's statistics — bikes.mp4's cut at 5.48 s scores 2 with 32)
        self._m: deque[float] = deque(maxlen=cfg.window)
        self._cuts: deque[tuple[float, float]] = deque(maxlen=CUTS)  # (pts, score)
        self.frames = 0

    def pull(self) -> None:
        """Judge every frame the tap holds (called from the model worker before each sampled frame)."""
        for pts, _wall, small in self.tap.drain():
            self.push(pts, small)

    def push(self, pts: float, small: np.ndarray) -> None:
        self.frames += 1
        z = normalise(thumbnail(small), self.cfg.flat_level)
        prev, self._prev = self._prev, z
        if z is None or prev is None:  # flat pictures carry no content: the flat rules of the detector decide
            return
        d = distance(z, prev)
        m = moved_distance(z, prev) if d >= self.cfg.cut_change else d
        score = robust_cut_score(m, self._m, self.cfg)
        if score is not None:
            self._cuts.append((pts, score))  # a cut stays out of the statistics, as in the sampled test
            return
        self._m.append(m)

    def cut_between(self, after: float | None, upto: float) -> float | None:
        """The strongest tap cut with after < pts <= upto (None: any up to `upto`); earlier ones are forgotten."""
        while self._cuts and after is not None and self._cuts[0][0] <= after + 1e-6:
            self._cuts.popleft()
        scores = [s for p, s in self._cuts if p <= upto + 1e-6]
        return max(scores) if scores else None
