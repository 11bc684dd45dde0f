"""Run scene detectors over a video file and score them against truth (detector alone, no daemon).

    ours_on_file(path, fps, SceneConfig())   → {"cuts": [scene start pts], "reported": [pts of the frame that
                                               reported it], "cpu_ms": detector CPU time, "frames": n}
    pyscenedetect_on_file(path, "adaptive")  → {"cuts": [...], "cpu_ms": ...}

Our detector sees what it sees in the daemon: frames sampled at `fps` by timestamp, prepared as the model's input
(resized to the model's image size, 448² for the tiny preset), with the DTD step of a pixel-mode DTD, and its cut tap
fed every decoded frame as the camera's decode thread does (cpu_ms includes the tap's scaling).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from livesight.config import DTDConfig, SceneConfig
from livesight.daemon.scene_detectors import dtd_detector
from livesight.model.dtd import DTD
from livesight.model.qwen import prepare
from livesight.streaming.sampler import sample_video
from livesight.streaming.tap import FrameTap
from livesight.types import TapSignal


def ours_on_file(path: Path, fps: float, cfg: SceneConfig, *, image_size: int = 448) -> dict[str, Any]:
    det, tap = dtd_detector(cfg, "bench", sample_fps=fps, dtd_mode="pixel", tap_kind=_TimedTap)
    dtd = DTD(DTDConfig(mode="pixel", threshold=0.04))
    cuts, reported = [], []
    cpu = 0.0
    n = 0
    for s in sample_video(path, fps, tap=tap):
        p = prepare(s.rgb, image_size, 28)
        need = dtd.precheck(p, s.pts)  # pixel mode decides from pixels: the encoding is only carried along
        step = dtd.decide("bench", s.pts, 0.0, p, _fake_encoding(p) if need else None)
        t0 = time.thread_time()
        change = det.update(step, p)
        cpu += time.thread_time() - t0
        n += 1
        if change is not None:
            cuts.append(round(change.pts, 3))
            reported.append(round(s.pts, 3))
    tap_ms = tap.cpu_s * 1000 if isinstance(tap, _TimedTap) else 0.0
    return {
        "cuts": cuts,
        "reported": reported,
        "cpu_ms": round(cpu * 1000 + tap_ms, 2),  # the detector's thread time + the decode thread's tap scaling
        "tap_ms": round(tap_ms, 2),
        "frames": n,
        "encoder_skipped": dtd.encoder_skipped,
    }


class _TimedTap(FrameTap):
    """The cut tap, counting the decode thread's time spent offering frames to it (scaling the ones it keeps, and
    judging them)."""

    cpu_s = 0.0

    def offer(self, pts: float, frame: Any) -> TapSignal:
        t0 = time.thread_time()
        signal = super().offer(pts, frame)
        self.cpu_s += time.thread_time() - t0
        return signal


def _fake_encoding(p: np.ndarray):
    import torch

    from livesight.model.backend import EncodedFrame

    gh, gw = p.shape[0] // 28, p.shape[1] // 28
    return EncodedFrame(torch.zeros(gh * gw, 4), (gh, gw))


def small_frames(path: Path, fps: float | None) -> tuple[list[float], np.ndarray]:
    """Frames sampled at fps (None: all), as TransNetV2 reads them: [N, 27, 48, 3] uint8."""
    pts, out = [], []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        step = None if fps is None else 1.0 / fps
        nxt = None
        for f in c.decode(stream):
            t = float(f.time) if f.time is not None else len(pts) / 25.0
            if step is not None:
                if nxt is not None and t < nxt - 1e-3:
                    continue
                nxt = (t if nxt is None or t - nxt >= step else nxt) + step
            pts.append(round(t, 3))
            out.append(f.to_ndarray(width=48, height=27, format="rgb24"))
    return pts, np.stack(out)


def transnet_on_file(path: Path, fps: float | None, cfg: SceneConfig, model: Any, *, online: bool) -> dict[str, Any]:
    """TransNetV2 offline (whole clip at once) or online (bounded look-ahead, `TransNetOnline`)."""
    from livesight.memory.transnet_detector import TransNetOnline, probabilities, rising

    pts, frames = small_frames(path, fps)
    t0 = time.process_time()
    if not online:
        cuts = rising(probabilities(model, frames), pts, cfg.transnet_threshold, cfg.min_scene_s)
        return {"cuts": cuts, "reported": cuts, "cpu_ms": round((time.process_time() - t0) * 1000, 1)}
    det = TransNetOnline(cfg, "bench", model=model)
    cuts, reported = [], []
    for t, f in zip(pts, frames, strict=True):
        for ch in det.push(t, 0.0, f):
            cuts.append(ch.pts)
            reported.append(t)
    for ch in det.flush():
        cuts.append(ch.pts)
        reported.append(pts[-1])
    return {"cuts": cuts, "reported": reported, "cpu_ms": round((time.process_time() - t0) * 1000, 1)}


def pyscenedetect_on_file(path: Path, which: str) -> dict[str, Any]:
    from scenedetect import AdaptiveDetector, ContentDetector, ThresholdDetector, detect

    detector = {"content": ContentDetector, "adaptive": AdaptiveDetector, "threshold": ThresholdDetector}[which]()
    t0 = time.process_time()
    scenes = detect(str(path), detector)
    cpu = time.process_time() - t0
    return {"cuts": [round(a.seconds, 3) for a, _ in scenes[1:]], "cpu_ms": round(cpu * 1000, 1)}
