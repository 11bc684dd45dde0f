"""Builds each camera's scene detector from `scenes.detector`, and the camera's frame tap it reads (dtd: its cut tap
at cut_tap_fps; transnetv2: its 48x27 frames at transnet_fps)."""

from __future__ import annotations

import asyncio
from typing import Any

from livesight.config import SceneConfig
from livesight.daemon.model_worker import DetectorLike
from livesight.memory.scene_detector import SceneDetector
from livesight.memory.tap_cuts import TAP_INTERPOLATION, TAP_SIZE, TapCuts
from livesight.streaming.tap import FrameTap


class SceneDetectors:
    """One per daemon: the TransNetV2 weights are loaded once (in a thread) and shared by the cameras (they all run
    in the one model-worker thread)."""

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self._model: Any = None

    async def build(
        self, camera: str, *, start_scene: int, dtd_mode: str, sample_fps: float | None = None
    ) -> tuple[DetectorLike, FrameTap | None]:
        if self.cfg.detector == "dtd":
            return dtd_detector(self.cfg, camera, sample_fps=sample_fps, start_scene=start_scene, dtd_mode=dtd_mode)
        from livesight.memory.transnet_detector import TransNetSceneDetector, load_transnet

        if self._model is None:
            self._model = await asyncio.to_thread(load_transnet)
        tap = FrameTap(self.cfg.transnet_fps)
        return TransNetSceneDetector(self.cfg, camera, tap, start_scene=start_scene, model=self._model), tap


def dtd_detector(
    cfg: SceneConfig,
    camera: str,
    *,
    sample_fps: float | None,
    start_scene: int = 1,
    dtd_mode: str = "feature",
    tap_kind: type[FrameTap] = FrameTap,
) -> tuple[SceneDetector, FrameTap | None]:
    """The `dtd` detector and its cut tap (64x48 frames at cut_tap_fps, scaled by area, judged in the camera's decode
    thread by TapCuts, which the detector reads), or no tap when cut_tap_fps is 0 or no faster than the camera's
    sampler (it would see nothing the sampled frames do not)."""
    fps = cfg.cut_tap_fps
    useful = fps > 0 and (sample_fps is None or fps > sample_fps)
    cuts = TapCuts(cfg) if useful else None
    tap = (
        tap_kind(fps, width=TAP_SIZE[0], height=TAP_SIZE[1], interpolation=TAP_INTERPOLATION, judge=cuts)
        if useful
        else None
    )
    return SceneDetector(cfg, camera, start_scene=start_scene, dtd_mode=dtd_mode, tap_cuts=cuts), tap
