"""Online (causal) scene-boundary detection on the DTD signal.

The signal is the mean per-token change of each sampled frame against the tokens the model holds (DTDStep.change:
mean absolute pixel difference in pixel mode, 1 - cosine similarity in feature/relative mode). A hard cut changes
every token by a lot; motion changes some tokens, or all of them a little. The changed-token *ratio* is a worse
signal: it saturates near 1.0 on busy video (a panning street scene), where a cut cannot stand out.

Its level depends on the DTD mode, the model and the video, so the test is adaptive, like PySceneDetect's
AdaptiveDetector: a frame is a boundary when its signal
  - exceeds the rolling mean of the previous `window` frames by `threshold` rolling standard deviations,
  - is at least `min_ratio` times that rolling mean,
  - and rises above it by at least `min_change` (absolute),
and the current scene is at least `min_scene_s` long; at least 3 frames of history are needed
(after the start or a cut) before a spread is trusted. `min_change` defaults by DTD mode (its unit differs).
Frames kept whole by rule (first frame, new resolution,
keyframes) and frames whose vision encoder was skipped (nothing changed enough to encode) are not evidence and are
skipped. Decisions use only past frames: the boundary is reported on the frame where the cut is seen.
"""

from __future__ import annotations

import math
from collections import deque

from livesight.config import SceneConfig
from livesight.types import DTDStep, SceneChange

MIN_HISTORY = 3  # frames of history (after the start or a cut) before a boundary can be judged


class SceneDetector:
    def __init__(self, cfg: SceneConfig, camera: str, *, start_scene: int = 1, dtd_mode: str = "feature") -> None:
        self.cfg = cfg
        # the signal's unit depends on the DTD mode: pixels are quieter than a feature space's cosine distance
        self.min_change = cfg.min_change if cfg.min_change is not None else (0.05 if dtd_mode == "pixel" else 0.1)
        self.camera = camera
        self.scene = start_scene  # number of the current scene
        self._history: deque[float] = deque(maxlen=cfg.window)
        self._scene_start: float | None = None
        self.last_score = 0.0

    def update(self, step: DTDStep) -> SceneChange | None:
        signal = float(step.change.mean()) if step.change.size else 0.0
        if step.encoder_skipped and not step.full:
            return None  # too little changed to even encode: not a cut, and not evidence for the statistics
        if step.full:  # not evidence of change; a new camera/resolution starts a fresh history
            if self._scene_start is None:
                self._scene_start = step.pts
            return None
        if self._scene_start is None:
            self._scene_start = step.pts
        change = self._score(signal)
        self._history.append(signal)
        if change is None:
            return None
        self.last_score = change
        if step.pts - self._scene_start < self.cfg.min_scene_s:
            return None
        self.scene += 1
        self._scene_start = step.pts
        self._history.clear()  # the new scene's statistics start after the cut
        return SceneChange(self.camera, self.scene, step.pts, step.wall_time, round(change, 3))

    def _score(self, signal: float) -> float | None:
        """How many rolling std above the rolling mean, when it is a boundary; else None."""
        if len(self._history) < MIN_HISTORY:  # too few frames for a trustworthy spread
            return None
        n = len(self._history)
        mean = sum(self._history) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in self._history) / (n - 1))
        rise = signal - mean
        if rise < self.min_change or signal < self.cfg.min_ratio * mean:
            return None
        score = rise / max(std, 1e-3)
        return score if score >= self.cfg.threshold else None
