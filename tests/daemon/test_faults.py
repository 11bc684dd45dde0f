"""Fault containment with the real daemon (App, real decoded video, the tiny real model): no frame, camera or
part takes the daemon down; what fails is counted, shown in /healthz and retried."""

from __future__ import annotations

from livesight.types import CameraState, ResponseStatus
from tests.daemon.conftest import ask, daemon_config, running, until

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
