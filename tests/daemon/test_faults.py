"""Fault containment with the real daemon (App, real decoded video, the tiny real model): no frame, camera or
part takes the daemon down; what fails is counted, shown in /healthz and retried."""

from __future__ import annotations

import re
import time

import numpy as np

from livesight.types import CameraState, CameraStatus, ResponseStatus
from tests.daemon.conftest import ask, daemon_config, running, until
from tests.helpers import http_get

GRAY = "lavfi:color=c=gray:s=640x360:r=10"


async def test_mode_off_on_a_still_camera_keeps_everything(tiny_backend) -> None:
    """Issue #12: mode off + the (default) pixel pre-check used to raise 'this frame must be encoded' and end
    the daemon within seconds on a still camera."""
    cfg = daemon_config([{"id": "still", "source": GRAY, "sample_fps": 4}], dtd={"mode": "off"})
    async with running(cfg, tiny_backend) as (app, task):
        k = app.service.counters["still"]
        await until(lambda: k.frames_encoded >= 6, what="6 frames encoded")
        assert not task.done()
        assert k.frames_failed == 0
        assert k.encoder_skipped == 0
        assert k.tokens_kept == k.tokens_total > 0  # mode off: keep everything
        done = await ask(app, "still")
        assert done.status is ResponseStatus.COMPLETED
        assert app.service.states["still"].state is CameraState.LIVE


class PoisonedBackend:
    """The tiny real model, except that encoding a magenta frame raises (a frame that breaks the model), and each
    encoder call can be slowed down (a stalled model). Everything else is the real backend."""

    def __init__(self, real) -> None:
        self._real = real
        self.info = real.info
        self.poisoned = True
        self.delay_s = 0.0
        self.calls = 0

    def prepare(self, rgb):
        return self._real.prepare(rgb)

    def encode(self, frames):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.poisoned and any(is_magenta(f) for f in frames):
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        return self._real.encode(frames)

    def new_context(self):
        return self._real.new_context()


def is_magenta(f: np.ndarray) -> bool:
    c = f[f.shape[0] // 2, f.shape[1] // 2]
    return bool(c[0] > 200 and c[1] < 60 and c[2] > 200)


async def test_a_camera_whose_frames_fail_goes_to_error_and_the_others_never_notice(tiny_backend) -> None:
    backend = PoisonedBackend(tiny_backend)
    cfg = daemon_config(
        [
            {"id": "bad", "source": "lavfi:color=c=magenta:s=320x240:r=10", "sample_fps": 5},
            {"id": "good", "source": "lavfi:testsrc2=size=320x240:rate=10", "sample_fps": 5},
        ],
        dtd={"mode": "off"},  # every frame encoded: good and bad frames share encoder batches
        worker={"max_failures": 3, "retry": {"initial_s": 0.3, "max_s": 0.6, "jitter": 0.0}},
    )
    async with running(cfg, backend) as (app, task):
        svc = app.service
        sub = svc.subscribe(maxsize=1000)
        bad, good = svc.counters["bad"], svc.counters["good"]
        await until(lambda: svc.states["bad"].state is CameraState.ERROR, what="camera bad in state error")
        reason = svc.states["bad"].reason
        assert "3 frames failed in a row" in reason and "RuntimeError" in reason and "illegal memory" in reason
        h = svc.health()
        assert h["status"] == "degraded" and h["cameras"]["bad"]["state"] == "error"
        assert h["worker"]["state"] == "running" and h["worker"]["cameras_in_error"] == ["bad"]
        _, _, metrics = await http_get(app.port, "/metrics")
        failed_line = re.search(rb'^livesight_frames_failed_total\{camera="bad"\} (\d+)', metrics, re.M)
        assert failed_line and int(float(failed_line.group(1))) >= 3
        assert b'livesight_frames_failed_total{camera="good"} 0.0' in metrics
        # retried with backoff: it fails again (another error announcement, a growing retry number)
        await until(lambda: bad.frames_failed >= 5, what="retries")
        encoded_before = good.frames_encoded
        await until(lambda: good.frames_encoded >= encoded_before + 5, what="the good camera goes on")
        assert good.frames_failed == 0 and svc.states["good"].state is CameraState.LIVE
        assert (await ask(app, "good")).status is ResponseStatus.COMPLETED
        # the fault goes away: the next retry clears the error, the camera is live again
        backend.poisoned = False
        await until(lambda: svc.states["bad"].state is CameraState.LIVE, what="bad recovers")
        failed = bad.frames_failed
        await until(lambda: bad.frames_encoded >= 3, what="bad camera frames processed")
        assert bad.frames_failed == failed
        assert not task.done()
        sub.close()  # what was published so far, then the end
        states = [ev async for ev in sub if isinstance(ev, CameraStatus) and ev.camera == "bad"]
        kinds = [s.state for s in states]
        assert CameraState.ERROR in kinds and kinds[-1] is CameraState.LIVE
        assert len({s.reason for s in states if s.state is CameraState.ERROR}) >= 2  # each retry announced
