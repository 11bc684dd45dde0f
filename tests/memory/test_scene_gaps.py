"""Dropped frames are not cuts: when the model worker falls behind, the frames the detector sees are seconds apart
and differ as a cut does. The detector knows the gap (`missed`) and the cut tap's evidence for it."""

from __future__ import annotations

import numpy as np

from livesight.bench.scenes.suite import pan
from livesight.config import SceneConfig
from livesight.daemon.scene_detectors import dtd_detector
from livesight.model.vision_input import prepare
from livesight.streaming.demo_stream import SCENE_S, demo_frames
from livesight.streaming.sampler import HeldSampling, Sampler
from livesight.types import DTDStep, TapSignal


def _step(t: float) -> DTDStep:
    z = np.zeros(4, bool)
    return DTDStep("cam", t, 0.0, (2, 2), z, np.zeros(4, np.float32), True, 0.0, 0.0, False)


def _pan_with_gaps(cfg: SceneConfig, *, tell_gaps: bool) -> list[float]:
    """A pan (100 px/s across a photo, no cut) at 2 fps; after 2 s only every 8th sampled frame reaches the detector
    (4 s gaps, as on an overloaded box); the decoder's tap sees every frame."""
    shot = pan(0, 100.0)
    det, tap = dtd_detector(cfg, "cam", sample_fps=2.0)
    found, last = [], None
    for i in range(300):  # 30 s at 10 fps
        t = i / 10
        frame = np.clip(shot(t), 0, 255).astype(np.uint8)
        if tap is not None:
            tap.offer(t, frame)
        k, tick = divmod(i, 5)
        if tick or (k > 4 and k % 8):
            continue
        missed = 0 if last is None else k - last - 1
        last = k
        c = det.update(_step(t), frame, missed if tell_gaps else 0)
        found += [c.pts] if c is not None else []
    return found


def test_a_gap_is_not_a_cut() -> None:
    assert _pan_with_gaps(SceneConfig(), tell_gaps=True) == []
    # the same frames without the gap: a pan over 4 s looks like a cut (what overload did to the detector)
    assert len(_pan_with_gaps(SceneConfig(), tell_gaps=False)) >= 3
    assert _pan_with_gaps(SceneConfig(cut_tap_fps=0), tell_gaps=True) == []  # no tap: no evidence, no cut


def test_cuts_inside_gaps_are_found_by_the_tap_at_their_time() -> None:
    """builtin:demo (a cut every 5 s) with 80% of the sampled frames dropped at random: every cut is a boundary, at
    the cut's own pts (the tap saw it), and nothing else — the same as with nothing dropped."""

    def run(drop: float) -> list[float]:
        det, tap = dtd_detector(SceneConfig(), "cam", sample_fps=2.0)
        assert tap is not None
        rng = np.random.default_rng(0)
        out: list[tuple[float, object, bool]] = []
        held = HeldSampling(Sampler(2.0), lambda pts, f, ev: out.append((pts, f, ev)))
        found, last, index = [], None, 0
        for pts, rgb in demo_frames():
            if pts > 60:
                break
            signal = tap.offer(pts, rgb)
            held.frame(pts, rgb, signal, held.sampler.take(pts))
            for p, f, _ in out:
                index += 1
                if rng.random() < drop:
                    continue  # dropped by the camera's queue
                missed = 0 if last is None else index - last - 1
                last = index
                c = det.update(_step(p), prepare(f, 448), missed)  # type: ignore[arg-type]
                found += [round(c.pts, 2)] if c is not None else []
            out.clear()
        return found

    truth = [SCENE_S * k for k in range(1, 12)]
    assert run(0.0) == truth
    assert run(0.8) == truth


def test_signal_none_keeps_sampling_regular() -> None:
    taken = []
    held = HeldSampling(Sampler(2.0), lambda pts, f, ev: taken.append((pts, ev)))
    for i in range(30):
        held.frame(i / 10, None, TapSignal.NONE, held.sampler.take(i / 10))
    assert taken == [(k / 2, False) for k in range(6)]


def _with_tap(pictures: list[np.ndarray]) -> list[tuple[float, float]]:
    """Frames at 10 fps through the tap and event-triggered sampling at 2 fps, into the detector: (boundary pts,
    pts of the sampled frame that reported it)."""
    det, tap = dtd_detector(SceneConfig(), "cam", sample_fps=2.0)
    assert tap is not None
    out: list[tuple[float, object, bool]] = []
    held = HeldSampling(Sampler(2.0), lambda pts, f, ev: out.append((pts, f, ev)))
    found = []
    for i, rgb in enumerate(pictures):
        pts = i / 10
        held.frame(pts, rgb, tap.offer(pts, rgb), held.sampler.take(pts))
        for p, f, _ in out:
            c = det.update(_step(p), f)  # type: ignore[arg-type]
            found += [(round(c.pts, 2), round(p, 2))] if c is not None else []
        out.clear()
    return found


def test_a_picture_that_goes_black_is_a_boundary_at_once() -> None:
    """Lens covered at 4.3 s: the tap's next frame confirms it, the black frame is sampled at once and the boundary
    is reported on it — not at the next tick, not when the picture comes back."""
    rng = np.random.default_rng(7)
    a = np.kron(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((56, 56, 1), np.uint8))
    black = np.zeros_like(a)
    assert _with_tap([a] * 43 + [black] * 40) == [(4.3, 4.3)]
    # a black start: no boundary; its first content starts a scene (confirmed by the next sampled frame)
    assert _with_tap([black] * 30 + [a] * 50) == [(3.0, 3.5)]
