"""Event-triggered sampling on real decoded video: a camera whose cut tap sees a cut samples that frame at once,
outside its regular ticks (counted), and skips the next tick, so its sampled rate stays; a flash is not sampled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from livesight.config import CameraConfig, SceneConfig
from livesight.daemon.scene_detectors import dtd_detector
from livesight.streaming.camera import Camera
from livesight.streaming.sampler import HeldSampling, Sampler
from livesight.types import Frame, TapSignal
from tests.streaming.media import write_flash_and_cut_clip as clip


async def sample(path: Path, *, tap: bool) -> tuple[list[Frame], Camera]:
    _det, frame_tap = dtd_detector(SceneConfig(), "c", sample_fps=2.0) if tap else (None, None)
    cfg = CameraConfig(id="c", source=str(path), sample_fps=2, realtime=False, queue_size=1000)
    camera = Camera(cfg, tap=frame_tap)
    await asyncio.wait_for(camera.run(), 30)
    frames = []
    while len(camera.frames):
        frames.append(camera.frames.get_nowait())
    return frames, camera


async def test_a_cut_is_sampled_at_once_not_at_the_next_tick(tmp_path: Path) -> None:
    path = clip(tmp_path / "event.mp4")
    regular, cam0 = await sample(path, tap=False)
    evented, cam1 = await sample(path, tap=True)
    pts0 = [round(f.pts, 2) for f in regular]
    pts1 = [round(f.pts, 2) for f in evented]
    assert 5.3 not in pts0 and 5.5 in pts0  # the sampler alone sees the new scene at the next tick
    assert 5.3 in pts1 and 5.5 not in pts1  # sampled at once; the next tick is skipped
    assert cam1.counters.frames_sampled_event == 1 and cam0.counters.frames_sampled_event == 0
    assert len(pts1) == len(pts0)  # the sampled rate stays
    assert [p for p in pts1 if p != 5.3] == [p for p in pts0 if p != 5.5]  # the flashes were not sampled
    assert [f.index for f in evented] == list(range(len(evented)))


def test_held_frames_keep_their_order_and_a_dropped_one_its_tick() -> None:
    sent: list[tuple[float, bool]] = []
    held = HeldSampling(Sampler(10.0), lambda pts, f, ev: sent.append((pts, ev)))
    signals = {3: TapSignal.HOLD, 4: TapSignal.DROP, 7: TapSignal.HOLD, 8: TapSignal.TAKE}
    for i in range(12):  # a 20 fps source sampled at 10 fps; the tap judges frames 3, 4, 7, 8
        pts = i / 20
        held.frame(pts, None, signals.get(i, TapSignal.NONE), held.sampler.take(pts))
    # 3 was held and dropped (not a tick: not sent; the tick at 4 waited behind it); 7 was held, then taken at
    # once: it replaces the tick at 8, which had waited behind it
    assert sent == [(0.0, False), (0.1, False), (0.2, False), (0.3, False), (0.35, True), (0.5, False)]


def test_a_held_frame_is_shown_early_and_what_early_returns_is_sent() -> None:
    sent: list[tuple[float, object, bool]] = []
    early: list[float] = []

    def convert(pts: float, frame: object) -> object:
        early.append(pts)
        return ("converted", frame)

    held = HeldSampling(Sampler(10.0), lambda pts, f, ev: sent.append((pts, f, ev)), early=convert)
    signals = {3: TapSignal.HOLD, 4: TapSignal.DROP, 7: TapSignal.HOLD, 8: TapSignal.TAKE}
    for i in range(10):
        pts = i / 20
        held.frame(pts, i, signals.get(i, TapSignal.NONE), held.sampler.take(pts))
    assert early == [0.15, 0.35]  # each held frame, when it is held (before the tap decides)
    assert (0.35, ("converted", 7), True) in sent  # the taken one goes out as converted
    assert all(f != ("converted", 3) for _, f, _ in sent)  # the dropped one does not go out


async def test_the_camera_shows_the_cut_frame_before_the_tap_confirms_it(tmp_path: Path) -> None:
    path = clip(tmp_path / "event.mp4")
    _det, frame_tap = dtd_detector(SceneConfig(), "c", sample_fps=2.0)
    seen: list[tuple[str, float, object]] = []
    cfg = CameraConfig(id="c", source=str(path), sample_fps=2, realtime=False, queue_size=1000)
    camera = Camera(cfg, tap=frame_tap, on_candidate=lambda cam, pts, rgb: seen.append((cam, round(pts, 2), rgb)))
    await asyncio.wait_for(camera.run(), 30)
    frames = []
    while len(camera.frames):
        frames.append(camera.frames.get_nowait())
    cut = [f for f in frames if round(f.pts, 2) == 5.3]
    assert len(cut) == 1
    shown = {pts: rgb for cam, pts, rgb in seen if cam == "c"}
    assert 5.3 in shown and shown[5.3] is cut[0].rgb  # shown early: the very frame the model later gets
    assert {1.2, 3.5} <= set(shown)  # the flashes were shown too (the tap had not decided yet) …
    assert not any(round(f.pts, 2) == 1.2 for f in frames)  # … and the one off the 2 fps ticks was not sampled
