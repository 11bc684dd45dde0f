"""The cut tap's judge (TapCuts), as the camera's decode thread drives it: one 64x48 frame per tap tick, a signal back
for each (event-triggered sampling), confirmed events for the scene detector."""

from __future__ import annotations

import numpy as np

from livesight.config import SceneConfig
from livesight.memory.tap_cuts import TapCuts
from livesight.types import TapSignal

HOLD, TAKE, DROP, NONE = TapSignal.HOLD, TapSignal.TAKE, TapSignal.DROP, TapSignal.NONE


def small(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))  # 48x64


def run(frames: list[np.ndarray], cfg: SceneConfig | None = None, fps: float = 10.0) -> tuple[list, TapCuts]:
    judge = TapCuts(cfg or SceneConfig())
    signals = [judge.push(i / fps, 1000.0 + i / fps, f) for i, f in enumerate(frames)]
    return signals, judge


def test_a_cut_is_held_then_taken_at_the_next_tap_frame() -> None:
    a, b = small(1), small(2)
    signals, judge = run([a] * 20 + [b] * 10)
    assert signals[20] is HOLD and signals[21] is TAKE  # 0.1 s later at 10 fps, not at the next sampled frame
    assert [s for i, s in enumerate(signals) if i not in (20, 21)] == [NONE] * 28
    events = judge.take_events()
    assert [(e.pts, e.kind) for e in events] == [(2.0, "cut")] and events[0].wall_time == 1002.0
    assert judge.take_events() == []  # handed over once


def test_a_one_frame_flash_is_dropped_by_the_next_tap_frame() -> None:
    a = small(3)
    washed = np.clip(a.astype(np.int32) // 3 + 200, 0, 255).astype(np.uint8)  # a flash that keeps the picture
    signals, judge = run([a] * 20 + [small(4)] + [a] * 10 + [washed] + [a] * 10 + [small(5)] + [a] * 10)
    assert signals[20] is HOLD and signals[21] is DROP  # another picture for one tap frame, then back
    assert signals[31] is NONE and signals[32] is NONE  # light, not content (normalised away): not even held
    assert signals[42] is HOLD and signals[43] is DROP
    assert judge.take_events() == [] and judge.rejected == 2
    assert (judge.held, judge.taken) == (2, 0)  # counted: held twice, taken never


def test_event_samples_at_most_one_per_min_scene_s() -> None:
    """Cuts 1 s apart (min_scene_s 2): each is an event for the detector, but only one in 2 s is taken at once."""
    pics = [small(10 + k) for k in range(6)]
    frames = [p for p in pics for _ in range(10)]  # a cut every second
    signals, judge = run(frames)
    assert [e.pts for e in judge.take_events()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [i / 10 for i, s in enumerate(signals) if s is TAKE] == [1.1, 3.1, 5.1]
    assert signals.count(HOLD) == 3 and DROP not in signals
    assert (judge.held, judge.taken) == (3, 3)


def test_going_dark_is_an_event_a_dark_start_and_a_blip_are_not() -> None:
    a = small(5)
    black = np.zeros_like(a)
    signals, judge = run([black] * 10 + [a] * 20 + [black] + [a] * 20 + [black] * 10)
    assert signals[:30] == [NONE] * 30  # a stream that starts black: no event
    assert signals[30] is HOLD and signals[31] is DROP  # one black tap frame: a blip
    assert signals[51] is HOLD and signals[52] is TAKE
    assert [(e.pts, e.kind) for e in judge.take_events()] == [(5.1, "flat")]


def test_whip_pan_colours_alone_are_no_cut() -> None:
    """The colour test needs the picture replaced as much as a cut replaces it (a pan keeps most of it)."""
    from livesight.bench.scenes.suite import pan
    from livesight.streaming.tap import small_rgb

    shot = pan(5, 260.0)
    frames = [small_rgb(np.clip(shot(i / 10), 0, 255).astype(np.uint8), 64, 48) for i in range(100)]
    signals, judge = run(frames)
    assert judge.take_events() == [], [i / 10 for i, s in enumerate(signals) if s is not NONE]
