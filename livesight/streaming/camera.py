"""`Camera`: one video source kept alive — decode thread, timestamp sampling, reconnects, stall watchdog, states.

    camera = Camera(cfg, on_status=callback, counters=CameraCounters())
    task = tg.create_task(camera.run(), name="camera:<id>")   # cancel to stop; returns when ended / failed
    frame = camera.frames.get_nowait()                         # sampled frames, DropOldestQueue (drop_oldest)

Decoding runs in one thread per connection. Sampling happens in that thread, by timestamp (variable frame rate
safe), so only sampled frames are converted to RGB (scaled by the decoder straight to `frame_size`, the model's input
size, when given) and handed to the event loop. Event-triggered sampling: when the camera's frame tap judges that a
decoded frame may start a new scene (TapSignal.HOLD), the camera holds it (and any regular sample) until the next tap
frame decides: TAKE samples it at once, outside the regular ticks (counted as `frames_sampled_event`; it replaces
the next regular sample, so the sampled rate stays), DROP forgets it (a flash). A held frame is converted at once
and shown to `on_candidate` (the model worker encodes it while the tap's next frame decides, so a confirmed cut's
frame reaches the model already encoded). Timestamps are made monotonic across reconnects and file loops.
States (`on_status`): connecting → live → (stalled | reconnecting → live)… →
ended | failed, each with a reason. A live source that ends or errors is retried with jittered, capped exponential
backoff (an authentication failure no faster than its cap); permanent errors (no such file/device, not a
video) fail at once; a file that ends has ended (or loops).
The stall watchdog fires when a live stream decoded no frame for `stall_timeout_s` (default: max(5 s, 10 frame
intervals)); opening a source is bounded by the socket timeout instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesight.backoff import Backoff
from livesight.config import CameraConfig
from livesight.errors import contain
from livesight.streaming.queues import DropOldestQueue
from livesight.streaming.sampler import HeldSampling, Sampler
from livesight.streaming.sources import SourceFailure, SourceSpec, describe_error, open_source, to_rgb
from livesight.streaming.tap import FrameTap
from livesight.types import CameraCounters, CameraState, CameraStatus, Frame, TapSignal

log = logging.getLogger(__name__)

MIN_STALL_S = 5.0
JOIN_TIMEOUT_S = 15.0  # a decode thread blocked in a socket read ends within the socket timeout


@dataclass(frozen=True, slots=True)
class _Converted:
    """A held frame already converted for the model (by `_early`): sent as it is."""

    rgb: np.ndarray


@dataclass
class _Outcome:
    frames: int  # frames decoded in this connection
    error: SourceFailure | None
    stopped: bool  # stopped by us (cancel or stall)


class Camera:
    def __init__(
        self,
        cfg: CameraConfig,
        *,
        on_status: Callable[[CameraStatus], None] | None = None,
        counters: CameraCounters | None = None,
        tap: FrameTap | None = None,
        frame_size: Callable[[int, int], tuple[int, int]] | None = None,
        on_candidate: Callable[[str, float, np.ndarray], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.tap = tap  # tiny frames at their own rate for a scene detector (offered every decoded frame)
        self.frame_size = frame_size  # (height, width) → the (height, width) sampled frames are delivered at
        # (camera, pts, rgb), on the loop: a frame the tap holds (a likely scene start), before the tap decides
        self.on_candidate = on_candidate
        self.spec = SourceSpec.parse(cfg.source, cfg)
        self.counters = counters or CameraCounters()
        self.frames: DropOldestQueue[Frame] = DropOldestQueue(cfg.queue_size, on_drop=self._dropped)
        self._on_status = on_status
        self.state: CameraState | None = None
        self.reason = ""
        self._pts_offset = 0.0  # keeps pts monotonic across reconnects and loops
        self._last_pts = -1.0
        self._last_frame_at = 0.0
        self._declared_fps: float | None = None
        self._index = 0
        self._reformatter: Any = None

    # ---- public ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect)
        self._set(CameraState.CONNECTING, "")
        while True:
            out = await self._connection()
            if out.frames:
                backoff.reset()
            if self.spec.kind == "file" and out.error is None and not out.stopped:
                if self.cfg.loop:
                    continue
                self._set(CameraState.ENDED, "end of file")
                return
            if out.error is not None and (out.error.permanent or not self.spec.live):
                self._set(CameraState.FAILED, out.error.reason)
                return
            reason = out.error.reason if out.error else ("stalled" if out.stopped else "stream ended")
            if backoff.exhausted:
                self._set(CameraState.FAILED, f"{reason}; gave up after {backoff.failures} attempts")
                return
            delay = backoff.next_delay()
            if out.error is not None and out.error.slow:  # authentication failed: no faster than the cap
                delay = max(delay, self.cfg.reconnect.max_s)
            self.counters.reconnects += 1
            # the attempt number keeps each announcement distinct (_set drops exact repeats)
            self._set(CameraState.RECONNECTING, f"{reason}; retry {backoff.failures} in {delay:.2f}s")
            await asyncio.sleep(delay)

    # ---- one connection -----------------------------------------------------------------------------------

    async def _connection(self) -> _Outcome:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        done: asyncio.Future[_Outcome] = loop.create_future()

        def finish(out: _Outcome) -> None:
            if not done.done():
                done.set_result(out)

        thread = threading.Thread(
            target=self._decode, args=(loop, stop, finish), name=f"livesight-decode-{self.cfg.id}", daemon=True
        )
        self._last_frame_at = time.monotonic()
        thread.start()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._check_every()):
                        return await asyncio.shield(done)
                except TimeoutError:
                    idle = time.monotonic() - self._last_frame_at
                    # connecting has its own (socket) timeout: the watchdog watches live streams only
                    if self.state is CameraState.LIVE and idle > self._stall_timeout():
                        self._set(CameraState.STALLED, f"no frame for {idle:.1f}s")
                        stop.set()
        finally:
            stop.set()
            if thread.is_alive():  # cancelled: wait (bounded) for the thread so nothing is left running
                await asyncio.shield(loop.run_in_executor(None, thread.join, JOIN_TIMEOUT_S))

    def _check_every(self) -> float:
        return min(1.0, self._stall_timeout() / 4)

    def _stall_timeout(self) -> float:
        if self.cfg.stall_timeout_s is not None:
            return self.cfg.stall_timeout_s
        fps = self._declared_fps or 1.0
        return max(MIN_STALL_S, 10.0 / fps)

    def _decode(self, loop: asyncio.AbstractEventLoop, stop: threading.Event, finish: Callable) -> None:
        """Decode thread: open, decode, sample, pace; hand sampled frames to the loop."""
        frames = 0
        error: SourceFailure | None = None
        closer = None
        try:
            info, it, closer = open_source(self.spec)
            self._declared_fps = info.fps
            sampler = Sampler(self.cfg.sample_fps)
            sampled = HeldSampling(
                sampler,
                lambda pts, frame, event: self._send(loop, pts, frame, event),
                early=(lambda pts, frame: self._early(loop, pts, frame)) if self.on_candidate is not None else None,
            )
            first_pts: float | None = None
            wall0 = time.monotonic()
            base = self._pts_offset if self._last_pts < 0 else self._last_pts + 1.0 / (info.fps or 30.0)
            for raw_pts, frame in it:
                if stop.is_set():
                    break
                now = time.monotonic()
                raw = raw_pts if raw_pts is not None else now - wall0
                if first_pts is None:
                    first_pts = raw
                    loop.call_soon_threadsafe(self._went_live, info)
                rel = max(0.0, raw - first_pts)
                if self.cfg.realtime and self.spec.paced:
                    delay = rel - (now - wall0)
                    if delay > 0 and stop.wait(delay):
                        break
                pts = max(base + rel, self._last_pts)
                self._last_pts = pts
                self._last_frame_at = time.monotonic()
                frames += 1
                self.counters.frames_decoded += 1
                signal = self.tap.offer(pts, frame) if self.tap is not None else TapSignal.NONE
                sampled.frame(pts, frame, signal, sampler.take(pts))
            sampled.flush()
        except Exception as e:  # any decode/open error becomes a camera state with its reason
            error = describe_error(e, self.spec)
        finally:
            if closer is not None:
                try:
                    closer.close()
                except Exception as e:  # FFmpeg could not close the connection cleanly: the next one is new anyway
                    contain("camera.close", e, log, f"camera {self.cfg.id}: closing its source")
            with contextlib.suppress(RuntimeError):  # the loop may be closing
                loop.call_soon_threadsafe(finish, _Outcome(frames, error, stop.is_set()))

    def _send(self, loop: asyncio.AbstractEventLoop, pts: float, frame: Any, event: bool) -> None:
        """Decode thread: one sampled frame to RGB (at frame_size) and over to the loop."""
        rgb = frame.rgb if isinstance(frame, _Converted) else self._rgb(frame)
        loop.call_soon_threadsafe(self._deliver, pts, rgb, event)

    def _early(self, loop: asyncio.AbstractEventLoop, pts: float, frame: Any) -> _Converted:
        """Decode thread: a frame the tap holds, converted now and shown to `on_candidate` (the model encodes it while
        the tap's next frame decides); the converted frame is what is held, and sent if the tap takes it."""
        rgb = self._rgb(frame)
        if self.on_candidate is not None:
            loop.call_soon_threadsafe(self.on_candidate, self.cfg.id, pts, rgb)
        return _Converted(rgb)

    def _rgb(self, frame: Any) -> np.ndarray:
        if self.frame_size is None:
            return to_rgb(frame)
        h, w = frame.shape[:2] if isinstance(frame, np.ndarray) else (frame.height, frame.width)
        th, tw = self.frame_size(h, w)
        if (th, tw) == (h, w):
            return to_rgb(frame)
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()  # one per camera: used by its decode thread only
        if isinstance(frame, np.ndarray):  # a generated source: through the same scaler (3.5x cheaper than PIL's)
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        out = self._reformatter.reformat(frame, width=tw, height=th, format="rgb24", interpolation="BICUBIC")
        return out.to_ndarray()

    # ---- on the loop -------------------------------------------------------------------------------------

    def _went_live(self, info: object) -> None:
        self._set(CameraState.LIVE, "")

    def _deliver(self, pts: float, rgb: object, event: bool = False) -> None:
        self.counters.frames_sampled += 1
        self.counters.frames_sampled_event += event
        self.frames.put_nowait(Frame(self.cfg.id, self._index, pts, time.time(), rgb))  # type: ignore[arg-type]
        self._index += 1

    def _dropped(self, _frame: Frame) -> None:
        self.counters.frames_dropped_queue += 1

    def _set(self, state: CameraState, reason: str) -> None:
        if state == self.state and reason == self.reason:
            return
        self.state, self.reason = state, reason
        log.debug("camera %s: %s %s", self.cfg.id, state.value, reason)
        if self._on_status is not None:
            self._on_status(CameraStatus(self.cfg.id, state, reason, time.time()))
