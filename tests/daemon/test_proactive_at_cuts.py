"""Proactive messages at confirmed boundaries only: a one-frame flash (rejected by the cut tap's next frame) gives
none, a hard cut gives one, from the frame sampled at once at the cut. The real daemon (echo backend) on a decoded
clip paced in real time; events read from the service's event hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from livesight.config import parse_config
from livesight.daemon.app import App
from livesight.types import CameraState, CameraStatus, ResponseCreated, ResponseDone, ResponseKind, SceneChange
from tests.streaming.media import write_flash_and_cut_clip


async def test_a_one_frame_flash_triggers_no_proactive_message_a_cut_does(tmp_path: Path) -> None:
    clip = write_flash_and_cut_clip(tmp_path / "flash-and-cut.mp4")
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": str(clip), "sample_fps": 2}],
            "model": {"backend": "echo", "max_new_tokens": 8},
            "memory": {"database": None},
            "proactive": {"enabled": True, "min_interval_s": 0},
            "server": {"host": "127.0.0.1", "port": 0},
        },
        origin="test",
    )
    app = App(cfg)
    runner = asyncio.create_task(app.run(), name="app")
    changes: list[SceneChange] = []
    proactive: list[ResponseCreated] = []
    done: list[ResponseDone] = []
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        sub = handles.service.subscribe(maxsize=1000)
        async with asyncio.timeout(30):
            async for ev in sub:
                if isinstance(ev, SceneChange):
                    changes.append(ev)
                elif isinstance(ev, ResponseCreated) and ev.kind is ResponseKind.PROACTIVE:
                    proactive.append(ev)
                elif isinstance(ev, ResponseDone) and any(p.response_id == ev.response_id for p in proactive):
                    done.append(ev)
                elif isinstance(ev, CameraStatus) and ev.state is CameraState.ENDED:
                    break
            while len(done) < len(proactive):  # the message of the cut may still be running
                ev = await sub.__anext__()
                if isinstance(ev, ResponseDone):
                    done.append(ev)
        counters = handles.service.counters["cam"]
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)
    assert [round(c.pts, 2) for c in changes] == [5.3]  # the cut, at its own frame; no flash
    assert [(p.scene, p.pts) for p in proactive] == [(changes[0].scene, changes[0].pts)]
    assert [d.status.value for d in done] == ["completed"]
    assert counters.frames_sampled_event == 1  # the cut's frame, sampled at once (5.3, not the tick at 5.5)
