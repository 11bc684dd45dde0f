"""The scene detector on the generated hard suite: real photos written as H.264 files, decoded and sampled as the
daemon does, scored against the exact truth in each clip's sidecar."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest

from livesight.bench.scenes.detectors import ours_on_file
from livesight.bench.scenes.suite import Transition, load_truth, score, write_suite
from livesight.config import SceneConfig
from livesight.memory.scene_detector import SceneDetector
from livesight.types import DTDStep

pytestmark = pytest.mark.slow  # generates the 10-clip suite (~15 s): make test only

CLIPS = (
    "parked-stills",
    "film-stills-black-gaps",
    "flash-and-flicker",
    "pan-and-drift",
    "object-enters-parked",
    "starts-on-black",
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    clips = write_suite(tmp_path_factory.mktemp("suite"), only=CLIPS)
    return {c.name: c.path for c in clips}


def test_truth_sidecar(suite: dict[str, Path]) -> None:
    t = load_truth(suite["parked-stills"])
    starts = [x["start"] for x in t["transitions"]]
    assert starts == [6.0, 12.0, 17.5, 24.0] and t["transitions"][2]["kind"] == "fade_black"
    assert t["hard"] and "policy" in t


@pytest.mark.parametrize("name", CLIPS)
def test_every_boundary_and_nothing_else_at_2fps(suite: dict[str, Path], name: str) -> None:
    """Cuts, fades, dissolves, black gaps and a black start found within the tolerance; no boundary for sensor
    noise, flashes, flicker, pans, drift or a person walking into a parked scene."""
    r = ours_on_file(suite[name], 2.0, SceneConfig())
    truth = [Transition(**x) for x in load_truth(suite[name])["transitions"]]
    s = score(r["cuts"], truth)
    assert (s["false"], s["missed"]) == ([], []), r
    reported = dict(zip(r["cuts"], r["reported"], strict=True))
    for start, end, found in s["matches"]:
        if start == end:  # a hard cut: seen on the first frame after it, reported one frame later (confirmation)
            assert start <= found < start + 0.5 + 1e-3 and reported[found] - start <= 1.0 + 1e-3


@pytest.mark.parametrize("fps", [1.0, 5.0])
def test_parked_stills_at_other_rates(suite: dict[str, Path], fps: float) -> None:
    r = ours_on_file(suite["parked-stills"], fps, SceneConfig())
    assert r["encoder_skipped"] > r["frames"] // 2  # most frames of a parked camera skip the encoder
    s = score(r["cuts"], [Transition(**x) for x in load_truth(suite["parked-stills"])["transitions"]])
    assert s["f1"] == 1.0, s


def _step(t: float) -> DTDStep:
    z = np.zeros(4, bool)
    return DTDStep("cam", t, 0.0, (2, 2), z, np.zeros(4, np.float32), True, 0.0, 0.0, False)


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((56, 56, 1), np.uint8))  # 448x448, blocky


def _run(frames: list[np.ndarray], cfg: SceneConfig | None = None, fps: float = 2.0) -> list[float]:
    det = SceneDetector(cfg or SceneConfig(), "cam")
    out = []
    for i, f in enumerate(frames):
        c = det.update(_step(i / fps), f)
        if c is not None:
            out.append(c.pts)
    return out


def test_flash_of_one_sampled_frame_is_not_a_boundary_but_a_cut_is() -> None:
    a, b = _picture(1), _picture(2)
    white = np.full_like(a, 255)
    assert _run([a] * 8 + [b] + [a] * 8) == []  # another picture for one frame, then back: a flash
    assert _run([a] * 8 + [white] + [a] * 8) == []
    assert _run([a] * 8 + [b] * 8) == [4.0]
    assert _run([a] * 8 + [b] * 8, SceneConfig(confirm_frames=0)) == [4.0]
    assert _run([a] * 8 + [b] + [a] * 8, SceneConfig(confirm_frames=0)) == [4.0]  # without confirmation it is one


def test_stream_starting_on_black_and_going_dark() -> None:
    a, b = _picture(3), _picture(4)
    black = np.zeros_like(a)
    assert _run([black] * 4 + [a] * 8) == [2.0]  # 2 s of black, then the first picture: a new scene
    assert _run([black] + [a] * 8) == []  # one black frame first (a decoder's start) is not a scene
    assert _run([a] * 8 + [black] * 6 + [b] * 6) == [4.0, 7.0]  # dark for 3 s: a scene of its own, then b
    # the picture going dark is a boundary at once; a hard cut out of it after BLACK_SCENE_S is a boundary of its
    # own, even within min_scene_s (issue 31: it was swallowed), whether another picture or the same one comes back
    assert _run([a] * 8 + [black] * 2 + [b] * 6) == [4.0, 5.0]
    assert _run([a] * 8 + [black] * 2 + [a] * 6) == [4.0, 5.0]
    assert _run([a] * 8 + [black] + [a] * 6) == []  # one flat sampled frame is not confirmed: a blip


def test_going_dark_is_reported_at_once_not_when_the_picture_comes_back() -> None:
    """Lens covered: the boundary comes with the next sampled frame (the confirmation), while it is still dark."""
    a = _picture(3)
    det = SceneDetector(SceneConfig(), "cam")
    reported = []
    for i, f in enumerate([a] * 8 + [np.zeros_like(a)] * 20):
        c = det.update(_step(i / 2), f)
        if c is not None:
            reported.append((c.pts, i / 2))
    assert reported == [(4.0, 4.5)]


def test_light_change_is_not_a_boundary() -> None:
    a = _picture(5).astype(np.float32)
    frames = [np.clip(a * g + o, 0, 255).astype(np.uint8) for g, o in [(1, 0)] * 6 + [(0.6, 10), (1.2, 5)] * 6]
    assert _run(frames) == []


@pytest.fixture(scope="module")
def handheld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_suite(tmp_path_factory.mktemp("handheld"), only=["handheld-action"])[0].path


def test_cuts_in_footage_that_moves_in_every_shot_need_the_cut_tap_at_2fps(handheld: Path) -> None:
    """Hand-held pans with figures crossing, cuts every 2.2–2.6 s: sampled at 2 fps a shot changes as much as a cut
    (no cut found from sampled frames alone); the cut tap (10 fps of 64x48 frames) finds every cut, nothing else."""
    truth = [Transition(**x) for x in load_truth(handheld)["transitions"]]
    sampled_only = score(ours_on_file(handheld, 2.0, SceneConfig(cut_tap_fps=0))["cuts"], truth)
    assert sampled_only["f1"] < 0.5, sampled_only
    r = ours_on_file(handheld, 2.0, SceneConfig())
    s = score(r["cuts"], truth)
    assert (s["false"], s["missed"]) == ([], []), r
    for start, _end, found in s["matches"]:
        assert start <= found < start + 0.5 + 1e-3  # the first sampled frame after the cut starts the new scene


@pytest.mark.parametrize("confirm", [1, 0])
def test_the_cut_tap_alone_never_declares_a_boundary(confirm: int) -> None:
    """A cut the tap saw and confirmed between two sampled frames whose pictures are the same (a glitch only the tap
    caught) is not a boundary, confirmation or not: the sampled picture must have changed too."""
    from livesight.daemon.scene_detectors import dtd_detector
    from livesight.memory.tap_cuts import TAP_SIZE
    from livesight.streaming.tap import small_rgb

    a, b = _picture(6), _picture(7)
    det, tap = dtd_detector(SceneConfig(confirm_frames=confirm), "cam", sample_fps=2.0)
    assert tap is not None and det.tap_cuts is not None
    found = []
    for i in range(100):  # 10 s at 10 fps on the tap; b for 0.3 s at 4.0 s; sampled at 2 fps
        t = i / 10
        tap.offer(t, small_rgb(b if 40 <= i < 43 else a, *TAP_SIZE))
        if i % 5 == 0:
            c = det.update(_step(t), a)
            found += [c.pts] if c is not None else []
    assert det.tap_cuts.frames == 100  # judged in the decode thread, every tap frame
    assert det.tap_cuts.events == deque() and det._tap_events == deque()  # the cuts were read, then forgotten
    assert found == []


def test_min_scene_s_is_not_lost_to_float_rounding() -> None:
    """Scenes exactly min_scene_s long on a 0.52 s sampling grid (5.52 - 3.52 = 1.9999999999999996) are scenes."""
    pics = [_picture(s) for s in (8, 9, 10)]
    det = SceneDetector(SceneConfig(), "cam")
    times = [t + d for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0) for d in (0.0, 0.52)]  # 0, 0.52, 1.0, 1.52, …
    out = []
    for t in times:
        pic = pics[0] if t < 3.52 else pics[1] if t < 5.52 else pics[2]
        c = det.update(_step(t), pic)
        out += [c.pts] if c is not None else []
    assert out == [3.52, 5.52], times


def test_a_hard_cut_out_of_black_is_a_boundary_of_its_own_within_min_scene_s() -> None:
    """Issue 31: black at t, content at t + 0.5 s, min_scene_s 2 → two boundaries (the cut out of black used to be
    swallowed into the black scene). A fade in from black, or a black gap shorter than BLACK_SCENE_S between two
    shots, stays one boundary."""
    a, b = _picture(13), _picture(14)
    black = np.zeros_like(a)
    cfg = SceneConfig(min_scene_s=2.0)
    assert _run([a] * 16 + [black] * 2 + [b] * 8, cfg, fps=4.0) == [4.0, 4.5]
    assert _run([a] * 16 + [black] * 2 + [a] * 8, cfg, fps=4.0) == [4.0, 4.5]  # lights off and on: two as well
    fade = [(b.astype(np.float32) * g).astype(np.uint8) for g in (0.2, 0.5, 0.8)]
    assert _run([a] * 16 + [black] * 3 + fade + [b] * 8, cfg, fps=4.0) == [4.0]  # a fade in: the black scene's
    assert _run([a] * 32 + [black] * 2 + [b] * 16, cfg, fps=8.0) == [4.0]  # a 0.25 s gap between shots: one


def test_a_hard_cut_out_of_black_seen_by_the_cut_tap_starts_where_the_tap_saw_it() -> None:
    from livesight.daemon.scene_detectors import dtd_detector
    from livesight.memory.tap_cuts import TAP_SIZE
    from livesight.streaming.tap import small_rgb

    a, b = _picture(15), _picture(16)
    black = np.zeros_like(a)
    det, tap = dtd_detector(SceneConfig(), "cam", sample_fps=2.0)
    assert tap is not None
    found = []
    for i in range(100):  # 10 s at 10 fps on the tap: black from 4.0 s, b from 4.7 s; sampled at 2 fps
        t = i / 10
        pic = a if i < 40 else black if i < 47 else b
        tap.offer(t, small_rgb(pic, *TAP_SIZE))
        if i % 5 == 0:
            c = det.update(_step(t), pic)
            found += [c.pts] if c is not None else []
    assert found == [4.0, 4.7]
