"""Sampling by timestamp: the one sampler of the project (cameras, benchmarks, `dtd-view`).

`Sampler` takes the first frame at or after each 1/fps tick of presentation time (variable frame rate safe; after
a gap longer than one interval the grid restarts at the next frame). `sample_video` decodes a file in presentation
order and yields the frames a `Sampler` takes (offline tools; live cameras sample in their decode thread).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from livesight.streaming.tap import FrameTap
from livesight.types import TapSignal


class Sampler:
    """Takes frames at `fps` by timestamp: the first frame at or after each 1/fps tick."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next: float | None = None
        self._skip = False

    EPS = 1e-3  # timestamps are floats: 0.1 * 3 is not 0.3

    def take(self, pts: float) -> bool:
        if self._next is None or pts >= self._next - self.EPS:
            # after a gap longer than one interval, restart the grid at this frame
            if self._next is None or pts - self._next >= self.interval:
                self._next = pts + self.interval
            else:
                self._next += self.interval
            if self._skip:
                self._skip = False
                return False
            return True
        return False

    def skip_next(self) -> None:
        """An event-triggered sample was taken off the grid: the next tick is not taken (the rate stays)."""
        self._skip = True


class HeldSampling:
    """Event-triggered sampling (in a camera's decode thread): regular samples go out at once, except while a frame
    the tap may declare a scene start is held (TapSignal.HOLD, one tap interval: 0.1 s at 10 fps); then they wait
    behind it, in order. TAKE sends the held frame as an event sample (it replaces the next regular sample, so the
    sampled rate stays); DROP forgets it (unless the sampler took it anyway). `early(pts, frame)`, when given, sees a
    frame as it is held and returns what is held in its place (the camera converts it and hands it to the model at
    once, which encodes it while the tap's next frame decides)."""

    MAX_WAITING = 8  # regular samples held behind a candidate (a tap interval holds a few at most)

    def __init__(
        self,
        sampler: Sampler,
        send: Callable[[float, Any, bool], None],
        early: Callable[[float, Any], Any] | None = None,
    ) -> None:
        self.sampler = sampler
        self.send = send  # (pts, frame, event)
        self.early = early
        self.held: tuple[float, Any, bool] | None = None  # (pts, frame, is it a regular sample too)
        self.waiting: list[tuple[float, Any]] = []

    def frame(self, pts: float, frame: Any, signal: TapSignal, regular: bool) -> None:
        if self.held is None:
            if signal is TapSignal.HOLD:
                self.held = (pts, frame if self.early is None else self.early(pts, frame), regular)
            elif regular:
                self.send(pts, frame, False)
            return
        if regular:
            self.waiting.append((pts, frame))
        if signal is TapSignal.TAKE or signal is TapSignal.DROP or len(self.waiting) > self.MAX_WAITING:
            self._release(signal is TapSignal.TAKE)

    def _release(self, take: bool) -> None:
        assert self.held is not None
        pts, frame, regular = self.held
        self.held = None
        if take and not regular:  # an event sample: it replaces the next regular one, so the rate stays
            if self.waiting:
                self.waiting.pop(0)
            else:
                self.sampler.skip_next()
            self.send(pts, frame, True)
        elif regular:
            self.send(pts, frame, False)
        for p, f in self.waiting:
            self.send(p, f, False)
        self.waiting.clear()

    def flush(self) -> None:
        """The stream ended: what is held goes out as the sampler decided."""
        if self.held is not None:
            self._release(False)


@dataclass(frozen=True)
class SampledFrame:
    index: int  # decoded frame number
    pts: float
    rgb: np.ndarray
    event: bool = False  # taken at once because the tap saw a likely scene start


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
    `tap` is offered every decoded frame first, as a camera's decode thread does (with a judge: event-triggered
    samples too, `SampledFrame.event`)."""
    out: list[SampledFrame] = []

    def send(pts: float, numbered: Any, event: bool) -> None:
        i, frame = numbered
        out.append(SampledFrame(i, pts, frame.to_ndarray(format="rgb24"), event))

    sampler = Sampler(fps) if fps is not None else None
    held = HeldSampling(sampler, send) if sampler is not None else None
    with av.open(str(path)) as container:
        n = 0
        for i, (pts, frame) in enumerate(presentation_order(container)):
            signal = tap.offer(pts, frame) if tap is not None else TapSignal.NONE
            if sampler is None or held is None:
                out.append(SampledFrame(i, pts, frame.to_ndarray(format="rgb24")))
            else:
                held.frame(pts, (i, frame), signal, sampler.take(pts))
            while out:
                yield out.pop(0)
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
        if held is not None:
            held.flush()
        yield from out
