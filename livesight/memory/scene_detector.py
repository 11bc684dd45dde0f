"""Online (causal) scene-boundary detection on the DTD signal.

The signal is the changed-token ratio of each sampled frame (1 - drop ratio): a hard cut makes nearly every token
"changed". Its level depends on the DTD mode and the model (pixel mode: ~1.0 at a cut; feature mode with the tiny
random model: ~0.3 at a cut against ~0.03 elsewhere), so the threshold is adaptive, like PySceneDetect's
AdaptiveDetector: a frame is a boundary when its ratio exceeds the rolling mean of the previous `window` frames by
`threshold` rolling standard deviations AND by at least `min_change` (absolute), and the current scene is at least
`min_scene_s` long. Frames kept whole by rule (first frame, new resolution, keyframes) are not evidence and are skipped.
Decisions use only past frames: the boundary is reported on the frame where the cut is seen.
"""

from __future__ import annotations

import math
from collections import deque

from livesight.config import SceneConfig
from livesight.types import DTDStep, SceneChange


class SceneDetector:
    def __init__(self, cfg: SceneConfig, camera: str, *, start_scene: int = 1) -> None:
        self.cfg = cfg
        self.camera = camera
        self.scene = start_scene  # number of the current scene
        self._history: deque[float] = deque(maxlen=cfg.window)
        self._scene_start: float | None = None
        self.last_score = 0.0

    def update(self, step: DTDStep) -> SceneChange | None:
        ratio = 1.0 - step.drop_ratio
        if step.full:  # not evidence of change; a new camera/resolution starts a fresh history
            if self._scene_start is None:
                self._scene_start = step.pts
            return None
        if self._scene_start is None:
            self._scene_start = step.pts
        change = self._score(ratio)
        self._history.append(ratio)
        if change is None:
            return None
        self.last_score = change
        if step.pts - self._scene_start < self.cfg.min_scene_s:
            return None
        self.scene += 1
        self._scene_start = step.pts
        self._history.clear()  # the new scene's statistics start after the cut
        return SceneChange(self.camera, self.scene, step.pts, step.wall_time, round(change, 3))

    def _score(self, ratio: float) -> float | None:
        """How many rolling std above the rolling mean, when it is a boundary; else None."""
        if len(self._history) < 2:
            return None
        n = len(self._history)
        mean = sum(self._history) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in self._history) / (n - 1))
        rise = ratio - mean
        if rise < self.cfg.min_change:
            return None
        score = rise / max(std, 1e-3)
        return score if score >= self.cfg.threshold else None
