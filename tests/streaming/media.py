"""Generated test media (numpy → PyAV), with exact ground truth."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(
    path: Path,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    times: list[float] | None = None,
) -> Path:
    """An H.264 (or MPEG-4) clip with a moving square; `times` gives explicit frame times (variable frame rate)."""
    w, h = size
    if times is None:
        times = [i / fps for i in range(round(seconds * fps))]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            img = np.full((h, w, 3), 60, np.uint8)
            x = (i * 7) % (w - 20)
            img[40:60, x : x + 20] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def write_flash_and_cut_clip(path: Path, fps: float = 10.0) -> Path:
    """H.264 at 10 fps, 8.3 s: a photo with one-frame flashes (another picture) at 1.2 s and 3.5 s, and a hard cut
    at 5.3 s (between 2 fps sampling ticks) to another photo."""
    from livesight.bench.scenes.suite import Spec, render, still, write_video

    base, other = still(0), still(9)

    def shot(t: float) -> np.ndarray:
        return other(t) if round(t * fps) in (12, 35) else base(t)

    frames, _, _ = render(Spec("flash-and-cut", [(shot, 5.3), (still(1), 3.0)], [("cut", 0)], noise=1.0, fps=fps))
    write_video(path, frames, fps)
    return path
