"""The cut tap in the daemon (scenes.cut_tap_fps, default 10): the camera's decode thread feeds it every decoded
frame, the model worker's scene detector reads it. Footage that moves in every shot, paced in real time at 2 fps,
through App (echo backend), scene.change events read by a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from livesight.bench.scenes.suite import Transition, load_truth, score, write_suite
from livesight.config import parse_config
from livesight.daemon.app import App, run_app


@pytest.mark.slow  # > 5 s alone: make test, not make test-quick
async def test_every_cut_of_handheld_footage_is_a_scene_change_at_2fps(tmp_path: Path) -> None:
    clip = write_suite(tmp_path / "suite", only=["handheld-action"])[0]
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": str(clip.path), "sample_fps": 2}],
            "model": {"backend": "echo", "max_new_tokens": 8},
            "dtd": {"mode": "pixel"},
            "memory": {"database": str(tmp_path / "events.sqlite")},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0},
        },
        origin="test",
    )
    app = App(cfg)
    runner = asyncio.create_task(run_app(app), name="app")
    changes: list[float] = []
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        async with connect(f"ws://127.0.0.1:{handles.port}") as ws, asyncio.timeout(clip.duration + 30):
            while True:
                e = json.loads(await ws.recv())
                if e["type"] == "scene.change":
                    changes.append(e["pts"])
                elif e["type"] == "camera.state" and e["state"] == "ended":
                    break
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)
    truth = [Transition(**x) for x in load_truth(clip.path)["transitions"]]
    s = score(changes, truth)
    assert (s["false"], s["missed"]) == ([], []), changes


async def test_a_cut_tap_only_where_it_sees_more_than_the_sampler() -> None:
    from livesight.config import SceneConfig
    from livesight.daemon.scene_detectors import SceneDetectors

    async def tap(cfg: SceneConfig, sample_fps: float):
        det, t = await SceneDetectors(cfg).build("cam", start_scene=1, dtd_mode="pixel", sample_fps=sample_fps)
        assert (getattr(det, "tap_cuts", None) is None) == (t is None)
        return t

    t = await tap(SceneConfig(), 2.0)
    assert t is not None and t.fps == 10.0 and t.size == (64, 48)
    assert await tap(SceneConfig(), 10.0) is None  # the sampler already sees every frame the tap would
    assert await tap(SceneConfig(cut_tap_fps=0), 2.0) is None
