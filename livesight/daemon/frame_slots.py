"""Latest-value slots of what the model saw, per camera: the last few sampled frames (model-sized) with their DTD
keep masks, and the first frames of the last few scenes (a detector reports a change a frame or more after the frame
it names, so the slot keeps the frame at the change's pts). Written by the model worker's thread, read on the event
loop and by the picture encoder (images.py). Holding a frame costs one reference (the worker never changes a
prepared frame): RECENT + SCENE_STARTS model-sized frames per camera at most.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from livesight.types import DTDStep, SceneChange

SCENE_STARTS = 4  # first frames kept per camera until their thumbnails are written
RECENT = 4  # last sampled frames kept per camera: a scene change is reported a frame or more after its first frame


@dataclass(frozen=True, slots=True)
class FrameView:
    camera: str
    seq: int  # sampled frames of this camera so far (1-based)
    pts: float
    wall_time: float
    rgb: np.ndarray  # [H, W, 3] uint8, the frame as the model saw it (resized)
    keep: np.ndarray  # [gh*gw] bool, DTD's decision
    grid_hw: tuple[int, int]

    @property
    def token_px(self) -> int:
        return self.rgb.shape[0] // self.grid_hw[0]


class FrameSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: dict[str, deque[FrameView]] = {}  # the last RECENT frames, newest last
        self._starts: dict[str, deque[tuple[int, FrameView]]] = {}
        self._seq: dict[str, int] = {}
        self._first_scene: dict[str, int] = {}  # camera → number of the scene its first frame starts
        # called (from the worker thread) when a camera's first frame starts its first scene: (camera, scene)
        self.on_first_scene: Callable[[str, int], None] | None = None

    def expect_first_scene(self, camera: str, scene: int) -> None:
        """The camera's next first frame starts scene `scene` (the scene detector announces only later cuts)."""
        with self._lock:
            self._first_scene[camera] = scene

    def put(self, step: DTDStep, prepared: np.ndarray, change: SceneChange | None) -> None:
        """One sampled frame went through DTD (`change`: the scene it starts, if any). Any thread; never blocks long."""
        with self._lock:
            seq = self._seq.get(step.camera, 0) + 1
            self._seq[step.camera] = seq
            view = FrameView(step.camera, seq, step.pts, step.wall_time, prepared, step.keep, step.grid_hw)
            recent = self._recent.setdefault(step.camera, deque(maxlen=RECENT))
            recent.append(view)
            first = self._first_scene.pop(step.camera, None)
            if change is not None:  # the scene's first frame: the one at change.pts (the oldest held after it)
                start = next((v for v in recent if v.pts >= change.pts - 1e-6), view)
                self._starts.setdefault(step.camera, deque(maxlen=SCENE_STARTS)).append((change.scene, start))
            elif first is not None:
                self._starts.setdefault(step.camera, deque(maxlen=SCENE_STARTS)).append((first, view))
        if first is not None and change is None and self.on_first_scene is not None:
            self.on_first_scene(step.camera, first)

    def latest(self, camera: str) -> FrameView | None:
        with self._lock:
            recent = self._recent.get(camera)
            return recent[-1] if recent else None

    def scene_start(self, camera: str, scene: int) -> FrameView | None:
        with self._lock:
            for n, view in self._starts.get(camera, ()):
                if n == scene:
                    return view
        return None
