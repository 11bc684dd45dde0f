"""DTD on generated frames with exact ground truth (pixel mode is model-independent; feature mode uses the tiny
real model)."""

from __future__ import annotations

import numpy as np
import pytest

from livesight.config import DTDConfig
from livesight.model.dtd import DTD, region_diff
from tests.model.conftest import square_frame


def run(dtd: DTD, backend, frames: list[np.ndarray], dt: float = 0.5):
    steps = []
    for i, f in enumerate(frames):
        p = backend.prepare(f)
        enc = backend.encode([p])[0] if dtd.precheck(p, i * dt) else None
        steps.append(dtd.decide("cam", i * dt, 0.0, p, enc))
    return steps


@pytest.mark.parametrize("mode", ["feature", "pixel", "relative"])
def test_static_scene_everything_dropped_after_first_frame(backend, mode: str) -> None:
    steps = run(
        DTD(DTDConfig(mode=mode, threshold=0.5 if mode != "pixel" else 0.05)), backend, [square_frame(50, 50)] * 5
    )
    assert steps[0].kept == 256
    assert all(s.kept == 0 for s in steps[1:])
    assert all(s.encoder_skipped for s in steps[1:])  # the pixel pre-check saw no change


def test_relative_mode_is_a_fixed_token_rate_without_precheck(backend) -> None:
    dtd = DTD(DTDConfig(mode="relative", threshold=0.75, pixel_precheck=None))
    steps = run(dtd, backend, [square_frame(50 + 5 * i, 50) for i in range(4)])
    assert [s.kept for s in steps] == [256, 64, 64, 64]


@pytest.mark.parametrize("mode", ["pixel", "feature"])
def test_moving_square_keeps_changed_tokens_only(backend, mode: str) -> None:
    frames = [square_frame(28 + 20 * i, 140) for i in range(8)]
    tau = 0.05 if mode == "pixel" else 0.9
    steps = run(DTD(DTDConfig(mode=mode, threshold=tau, pixel_precheck=None)), backend, frames)
    ref = frames[0]
    for f, s in zip(frames[1:], steps[1:], strict=True):
        changed_vs_prev = region_diff(f, ref) > 0
        assert not (s.keep & ~changed_vs_prev).any() or mode == "pixel", "a token that did not change was kept"
        if mode == "pixel":
            # recall 100%: every region whose change vs its reference is over τ is kept
            assert (s.keep == (s.change >= tau)).all()
        assert s.drop_ratio >= 0.9
        ref = f
    # pixel mode: the square's new and old positions (over τ vs last kept) are all kept
    big = [s for s in steps[1:] if s.kept]
    assert big, "something was kept"


def test_pixel_recall_against_ground_truth(backend) -> None:
    """Every region whose mean pixel change vs the previous frame is over τ is kept (last-kept reference)."""
    frames = [square_frame(30 + 17 * i, 60 + 9 * i) for i in range(10)]
    dtd = DTD(DTDConfig(mode="pixel", threshold=0.04))
    steps = run(dtd, backend, frames)
    for prev, f, s in zip(frames, frames[1:], steps[1:], strict=False):
        truth = region_diff(backend.prepare(f), backend.prepare(prev)) >= 0.04
        assert not (truth & ~s.keep).any()


def drift_frames(n: int, step: int) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.full((448, 448, 3), 100, np.uint8)
        f[0:112, 0:112] = 100 + step * i  # a region brightening a little each frame
        frames.append(f)
    return frames


def test_slow_drift_kept_with_last_kept_but_never_with_previous(backend) -> None:
    frames = drift_frames(12, 3)  # 3/255 ≈ 0.012 per frame; τ = 0.04 → about every 4th frame vs last kept
    ours = run(DTD(DTDConfig(mode="pixel", threshold=0.04, reference="last_kept")), backend, frames)
    theirs = run(DTD(DTDConfig(mode="pixel", threshold=0.04, reference="previous")), backend, frames)
    assert sum(s.kept for s in theirs[1:]) == 0, "previous-frame reference drops the drift forever"
    kept_at = [i for i, s in enumerate(ours) if i and s.kept]
    assert kept_at and kept_at[0] <= 4, kept_at
    for i in kept_at:
        assert ours[i].kept == 16  # exactly the drifting 4x4 tokens


def test_hard_cut_keeps_nearly_everything(backend) -> None:
    rng = np.random.default_rng(3)
    cut = (rng.random((448, 448, 3)) * 255).astype(np.uint8)
    for mode, tau in (("feature", 0.5), ("pixel", 0.05)):
        steps = run(DTD(DTDConfig(mode=mode, threshold=tau)), backend, [square_frame(50, 50)] * 3 + [cut])
        assert steps[-1].drop_ratio < 0.05, (mode, steps[-1].drop_ratio)


def test_keyframe_refresh_and_grid_change(backend) -> None:
    dtd = DTD(DTDConfig(mode="feature", keyframe_every_s=2.0))
    steps = run(dtd, backend, [square_frame(50, 50)] * 7, dt=0.5)
    assert [s.kept for s in steps] == [256, 0, 0, 0, 256, 0, 0]
    p = backend.prepare(np.zeros((480, 640, 3), np.uint8))
    assert dtd.precheck(p, 10.0)  # new resolution: kept whole
    s = dtd.decide("cam", 10.0, 0.0, p, backend.encode([p])[0])
    assert s.kept == s.total == 14 * 18


def test_decide_refuses_a_missing_encoding_when_one_is_needed(backend) -> None:
    dtd = DTD(DTDConfig())
    with pytest.raises(ValueError, match="must be encoded"):
        dtd.decide("cam", 0.0, 0.0, backend.prepare(square_frame(0, 0)), None)


@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
def test_copy_regions_copies_exactly_the_kept_regions(density: float) -> None:
    from livesight.model.dtd import copy_regions

    rng = np.random.default_rng(0)
    dst = rng.integers(0, 255, (448, 616, 3), dtype=np.uint8)
    src = rng.integers(0, 255, (448, 616, 3), dtype=np.uint8)
    keep = rng.random(16 * 22) < density
    expected = dst.copy()
    m = np.kron(keep.reshape(16, 22), np.ones((28, 28), bool))
    expected[m] = src[m]
    copy_regions(dst, src, keep, (16, 22), 28)
    assert (dst == expected).all()
