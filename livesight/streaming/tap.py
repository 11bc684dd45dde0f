"""A small frame tap beside the sampler: tiny RGB frames at their own rate, for a scene detector that needs more
frames per second than the model samples (the dtd detector's cut tap: 64x48 at 10 fps; TransNetV2: 48x27 at 5–10 fps).

The decode thread offers every decoded frame (`offer`: a timestamp check, and a downscale by the decoder's scaler
for the frames taken). Either a judge looks at each tiny frame right there, in the decode thread (the cut tap:
`TapJudge.push` says whether the camera should hold the frame it decoded and sample it at once — event-triggered
sampling, see `TapSignal`), or the frames wait for the model worker to drain them (`drain`; TransNetV2). Bounded: at
most `maxlen` frames wait (the oldest are dropped and counted). deque.append/popleft are atomic, so no lock is needed
between the two threads.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

import numpy as np

from livesight.types import TapSignal


class TapJudge(Protocol):
    """Judges each tap frame in the decode thread (memory/tap_cuts.py's TapCuts)."""

    def push(self, pts: float, wall_time: float, small: np.ndarray) -> TapSignal: ...


class FrameTap:
    def __init__(
        self,
        fps: float,
        *,
        width: int = 48,
        height: int = 27,
        maxlen: int = 600,
        interpolation: str | None = None,
        judge: TapJudge | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"tap fps must be > 0, got {fps}")
        self.fps = fps
        self.size = (width, height)
        # None: the decoder's default scaler (what TransNetV2 was trained on); "AREA": block means, 3-6x cheaper
        # for a 30x downscale (0.1-0.3 ms a frame from 720p-1080p against 1-1.9 ms), through one cached context
        self.interpolation = interpolation
        self.judge = judge
        self._reformatter: Any = None
        self._frames: deque[tuple[float, float, np.ndarray]] = deque(maxlen=maxlen)
        self._next: float | None = None
        self.dropped = 0

    def offer(self, pts: float, frame: Any) -> TapSignal:
        """From the decode thread, for every decoded frame: keeps one per 1/fps of stream time. With a judge, its
        signal for this frame (NONE for the frames the tap does not take)."""
        if self._next is not None and pts < self._next - 1e-3:
            return TapSignal.NONE
        step = 1.0 / self.fps
        self._next = (pts if self._next is None or pts - self._next >= step else self._next) + step
        if self.interpolation is not None and self._reformatter is None and not isinstance(frame, np.ndarray):
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()  # the decode thread's own: one tap, one thread
        small = small_rgb(frame, *self.size, self._reformatter, self.interpolation)
        if self.judge is not None:
            return self.judge.push(pts, time.time(), small)
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append((pts, time.time(), small))
        return TapSignal.NONE

    def drain(self) -> list[tuple[float, float, np.ndarray]]:
        out = []
        while self._frames:
            out.append(self._frames.popleft())
        return out


def small_rgb(
    frame: Any, width: int, height: int, reformatter: Any = None, interpolation: str | None = None
) -> np.ndarray:
    """An av.VideoFrame (scaled by the decoder's scaler) or an RGB ndarray (sampled) → [height, width, 3] uint8."""
    if isinstance(frame, np.ndarray):
        h, w = frame.shape[:2]
        ys = (np.arange(height) * h // height).clip(0, h - 1)
        xs = (np.arange(width) * w // width).clip(0, w - 1)
        return np.ascontiguousarray(frame[ys][:, xs, :3])
    if reformatter is not None:
        out = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=interpolation)
        return out.to_ndarray()
    return frame.to_ndarray(width=width, height=height, format="rgb24")
