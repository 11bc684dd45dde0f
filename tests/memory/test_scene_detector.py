"""The causal scene detector: cuts found within one sampled frame, no false cut on static or slowly changing video."""

from __future__ import annotations

import numpy as np
import pytest

from livesight.config import DTDConfig, SceneConfig
from livesight.memory.scene_detector import SceneDetector
from livesight.model.dtd import DTD
from livesight.types import DTDStep


def step(t: float, changed: float, n: int = 256, full: bool = False) -> DTDStep:
    keep = np.zeros(n, bool)
    keep[: round(changed * n)] = True
    return DTDStep("cam", t, 0.0, (16, 16), keep, keep.astype(np.float32), False, 0.0, 0.0, full)


def detect(signal: list[float], cfg: SceneConfig | None = None, fps: float = 2.0) -> list[int]:
    det = SceneDetector(cfg or SceneConfig(), "cam")
    cuts = []
    for i, r in enumerate(signal):
        if det.update(step(i / fps, r, full=i == 0)) is not None:
            cuts.append(i)
    return cuts


def test_feature_mode_signal_of_the_tiny_model() -> None:
    """Tiny random model, feature mode: ~3% changed normally, ~30% at a cut (DESIGN.md §7)."""
    rng = np.random.default_rng(0)
    sig = list(np.clip(0.03 + 0.01 * rng.standard_normal(60), 0, 1))
    for c in (20, 41):
        sig[c] = 0.3
    assert detect([1.0, *sig]) == [21, 42]


def test_pixel_mode_cut_and_motion() -> None:
    rng = np.random.default_rng(1)
    sig = list(np.clip(0.08 + 0.03 * rng.standard_normal(40), 0, 1))  # a person walking around
    sig[25] = 0.97
    assert detect([1.0, *sig]) == [26]


def test_cut_in_busy_video_where_almost_every_token_changes() -> None:
    """A panning street scene: ~90% of tokens over τ on every frame (the changed ratio saturates), each by a little;
    a cut changes them all by a lot. The magnitude finds the cut; the ratio alone could not."""
    rng = np.random.default_rng(3)
    det = SceneDetector(SceneConfig(), "cam")
    cuts = []
    for i in range(40):
        keep = rng.random(256) < (1.0 if i == 25 else 0.9)
        change = (rng.random(256) * (0.5 if i == 25 else 0.12)).astype(np.float32)
        s = DTDStep("cam", i / 2, 0.0, (16, 16), keep, change, False, 0.0, 0.0, i == 0)
        if det.update(s) is not None:
            cuts.append(i)
    assert cuts == [25]


def test_encoder_skipped_frames_are_evidence_of_no_change() -> None:
    """Round 2's failure, on the legacy signal (no pixels): a still shot is all encoder-skipped frames; they build the
    history (they were left out before, so the cut that ends the shot was never judged)."""
    det = SceneDetector(SceneConfig(), "cam")
    quiet = np.zeros(256, bool)
    assert det.update(step(0.0, 1.0, full=True)) is None
    for i in range(1, 12):  # a parked camera: the encoder is skipped, the change is sensor noise
        skipped = DTDStep("cam", i / 2, 0.0, (16, 16), quiet, np.full(256, 0.004, np.float32), True, 0.0, 0.0, False)
        assert det.update(skipped) is None
    assert det.update(step(6.0, 0.9)) is not None  # the cut that ends the still shot


def test_activity_rising_is_not_a_cut() -> None:
    """The demo stream's shapes reach busier areas: the change doubles (0.05 → 0.12) right after the start, with a
    short, calm history — not a cut. A real cut (0.9) right after still is."""
    sig = [1.0, 0.05, 0.051, 0.052, 0.055, 0.059, 0.125, 0.115, 0.075, 0.116, 0.93, 0.1]
    assert detect(sig, SceneConfig(min_scene_s=2.0)) == [10]


def test_min_scene_length_suppresses_flicker() -> None:
    sig = [1.0] + [0.02] * 10 + [0.9, 0.02, 0.9, 0.02] + [0.02] * 10
    assert detect(sig, SceneConfig(min_scene_s=2.0)) == [11]


def test_numbering_continues_and_events_carry_time() -> None:
    det = SceneDetector(SceneConfig(), "cam", start_scene=7)
    events = [det.update(step(i / 2, r, full=i == 0)) for i, r in enumerate([1.0] + [0.02] * 10 + [0.95])]
    change = events[-1]
    assert change is not None and change.scene == 8 and change.pts == pytest.approx(5.5) and change.score > 3


def clip(kind: str, n: int = 40, cut_at: tuple[int, ...] = (13, 27)) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    backgrounds = [(rng.random((448, 448, 3)) * 255).astype(np.uint8) for _ in range(len(cut_at) + 1)]
    frames = []
    for i in range(n):
        if kind == "static":
            f = backgrounds[0].copy()
        elif kind == "pan":  # a slow pan: the picture shifts 4 px per sampled frame
            big = np.concatenate([backgrounds[0], backgrounds[1]], axis=1)
            f = np.ascontiguousarray(big[:, 4 * i : 4 * i + 448])
        else:
            f = backgrounds[sum(i >= c for c in cut_at)].copy()
        x = 20 + 9 * i
        f[200:256, x : x + 56] = (255, 255, 0)  # a moving object throughout
        frames.append(f)
    return frames


@pytest.mark.slow  # > 5 s alone: make test, not make test-quick
@pytest.mark.parametrize("mode", ["pixel", "feature"])
@pytest.mark.parametrize("kind", ["cuts", "static", "pan"])
def test_generated_clips_through_real_dtd(request, mode: str, kind: str) -> None:
    backend = request.getfixturevalue("backend") if mode == "feature" else None
    dtd = DTD(DTDConfig(mode=mode, threshold=0.5 if mode == "feature" else 0.05))
    det = SceneDetector(SceneConfig(min_scene_s=2.0), "cam", dtd_mode=mode)
    cuts = []
    for i, f in enumerate(clip(kind)):
        enc = None
        if dtd.precheck(f, i / 2) and backend is not None:
            enc = backend.encode([f])[0]
        elif mode == "pixel" and dtd.precheck(f, i / 2):
            enc = _fake_encoding(f)
        s = dtd.decide("cam", i / 2, 0.0, f, enc)
        change = det.update(s, f)
        if change is not None:
            cuts.append(round(change.pts * 2))  # reported one frame later (confirmed), with the cut frame's pts
    expected = [13, 27] if kind == "cuts" else []
    assert cuts == expected


def _fake_encoding(frame: np.ndarray):
    """Pixel mode decides from pixels only; the encoding is just carried along."""
    import torch

    from livesight.model.backend import EncodedFrame

    return EncodedFrame(torch.zeros(256, 8), (16, 16))


@pytest.fixture(scope="module")
def backend():
    from tests.helpers import tiny_backend

    return tiny_backend()  # the session's one tiny model (tests/helpers.py)
