"""Sampling by timestamp: the one sampler of the project (cameras, benchmarks, `dtd-view`).

`Sampler` takes the first frame at or after each 1/fps tick of presentation time (variable frame rate safe; after
a gap longer than one interval the grid restarts at the next frame). `sample_video` decodes a file in presentation
order and yields the frames a `Sampler` takes (offline tools; live cameras sample in their decode thread).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from livesight.streaming.tap import FrameTap


class Sampler:
    """Takes frames at `fps` by timestamp: the first frame at or after each 1/fps tick."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next: float | None = None

    EPS = 1e-3  # timestamps are floats: 0.1 * 3 is not 0.3

    def take(self, pts: float) -> bool:
        if self._next is None or pts >= self._next - self.EPS:
            # after a gap longer than one interval, restart the grid at this frame
            if self._next is None or pts - self._next >= self.interval:
                self._next = pts + self.interval
            else:
                self._next += self.interval
            return True
        return False


@dataclass(frozen=True)
class SampledFrame:
    index: int  # decoded frame number
    pts: float
    rgb: np.ndarray


def presentation_order(
    container: av.container.InputContainer, window: int = 8
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames in timestamp order (AVI with packed B-frames decodes out of order): a small reorder heap."""
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


def sample_video(
    path: Path | str, fps: float | None, *, max_frames: int | None = None, tap: FrameTap | None = None
) -> Iterator[SampledFrame]:
    """Decode a file and yield frames sampled by timestamp at `fps` (None = every frame), in presentation order.
    `tap` is offered every decoded frame first, as a camera's decode thread does."""
    sampler = Sampler(fps) if fps is not None else None
    with av.open(str(path)) as container:
        n = 0
        for i, (pts, frame) in enumerate(presentation_order(container)):
            if tap is not None:
                tap.offer(pts, frame)
            if sampler is not None and not sampler.take(pts):
                continue
            yield SampledFrame(i, pts, frame.to_ndarray(format="rgb24"))
            n += 1
            if max_frames is not None and n >= max_frames:
                return
