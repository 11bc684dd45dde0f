"""Entries and their keyframes, from exact synthetic frames through the real scene detector: cuts, a long still
scene split every chunk_s, a scene that starts black, a fade through black, a one-frame flash, a clean stop."""

from __future__ import annotations

import numpy as np
import pytest

from livesight.config import SceneConfig
from livesight.memory.scene_detector import SceneDetector
from livesight.timeline.keyframes import MIN_ENTRY_S, QUIET_S, ClosedEntry, EntryTracker
from livesight.types import DTDStep

FPS = 2.0


def picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((56, 56, 1), np.uint8))  # 448x448, blocky


BLACK = np.zeros((448, 448, 3), np.uint8)
WHITE = np.full((448, 448, 3), 255, np.uint8)


def _step(t: float, kept: int) -> DTDStep:
    keep = np.zeros(256, bool)
    keep[:kept] = True
    return DTDStep("cam", t, 1000.0 + t, (16, 16), keep, np.zeros(256, np.float32), kept == 0, 0.0, 0.0, False)


def run(
    frames: list[np.ndarray],
    kept: list[int] | None = None,
    *,
    chunk_s: float = 300.0,
    stop: bool = True,
    full: list[bool] | None = None,
) -> tuple[list[ClosedEntry], list[float]]:
    """Frames at FPS through the detector and the tracker (as the frame pipeline feeds them) → closed entries.
    `full`: the frames DTD kept whole by rule (default: the stream's first frame, as DTD does)."""
    det = SceneDetector(SceneConfig(), "cam")
    tr = EntryTracker("cam", scene=1, chunk_s=chunk_s)
    out: list[ClosedEntry] = []
    cuts: list[float] = []
    prev = None
    for i, f in enumerate(frames):
        t = i / FPS
        k = kept[i] if kept is not None else (256 if prev is None or f is not prev else 3)
        change = det.update(_step(t, k), f)
        if change is not None:
            cuts.append(change.pts)
        out += tr.update(t, 1000.0 + t, f, k, change, full=full[i] if full is not None else i == 0)
        prev = f
    if stop:
        out += tr.close()
    return out, cuts


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or np.array_equal(a, b)


def test_every_scene_is_an_entry_that_ends_where_the_next_starts() -> None:
    a, b, c = picture(1), picture(2), picture(3)
    entries, cuts = run([a] * 8 + [b] * 8 + [c] * 6)
    assert cuts == [4.0, 8.0]
    assert [(e.entry.scene, e.entry.chunk, e.entry.pts, e.entry.end_pts) for e in entries] == [
        (1, 0, 0.0, 4.0),
        (2, 0, 4.0, 8.0),
        (3, 0, 8.0, 10.5),  # the last one closed by the stop, at its last frame
    ]
    assert entries[1].entry.wall_time == 1004.0 and entries[1].entry.end_wall_time == 1008.0
    for e, pic in zip(entries, (a, b, c), strict=True):
        assert all(same(f, pic) for f in e.frames)  # no frame of another scene
        assert len(e.frames) == len(e.entry.keyframes)
    ids = {e.entry.id for e in entries}
    assert len(ids) == 3 and all(i.startswith("tl_") for i in ids)


def test_first_action_last_and_identical_ones_stored_once() -> None:
    a = picture(4)
    frames = [a.copy() for _ in range(10)]
    frames[0][:56, :56] = 10  # a small object moving through a still scene, each frame different
    for i, f in enumerate(frames):
        f[200:256, 40 * i : 40 * i + 40] = 250
    kept = [30, 3, 5, 40, 9, 2, 1, 0, 0, 4]
    (e,), _ = run(frames, kept)
    assert [(k.role, k.pts) for k in e.entry.keyframes] == [("first", 0.0), ("action", 1.5), ("last", 4.5)]
    assert e.frames[1] is frames[3] and e.frames[2] is frames[9]
    # a scene whose first frame kept the most tokens (a cut: everything changed): "first" and "action" are one frame;
    # a still view's last frame is the same picture (sensor noise): one keyframe
    noisy = [np.clip(a + np.random.default_rng(i).normal(0, 2, a.shape), 0, 255).astype(np.uint8) for i in range(6)]
    (e,), _ = run(noisy)
    assert [k.role for k in e.entry.keyframes] == ["first"]
    moved = [*noisy[:5], noisy[5].copy()]
    moved[-1][390:446, 390:446] = 255 - moved[-1][390:446, 390:446]  # a small object came: 1/64 of the picture
    (e,), _ = run(moved, [256, 3, 3, 3, 3, 3])
    assert [k.role for k in e.entry.keyframes] == ["first", "last"]
    (e,), _ = run([a])  # one frame: one keyframe
    assert [k.role for k in e.entry.keyframes] == ["first"]


def with_box(pic: np.ndarray, x: int, shade: int = 255) -> np.ndarray:
    """A small object (1/64 of the picture) on a still view."""
    out = pic.copy()
    out[200:256, x : x + 56] = shade
    return out


def test_a_frame_kept_whole_by_rule_is_not_the_action() -> None:
    """DTD keeps the stream's first frame, a new resolution and a keyframe refresh whole by rule: their kept count is
    no evidence of change, so they never take the "action" keyframe from the frame where something happened."""
    a = picture(13)
    frames = [a] * 20
    frames[6] = box = with_box(a, 100)  # a small object, for one frame
    kept = [256] + [0] * 19
    kept[6], kept[12] = 12, 256  # frame 12: a keyframe refresh of the still view
    (e,), cuts = run(frames, kept, full=[i in (0, 12) for i in range(20)])
    assert cuts == []
    assert [(k.role, k.pts) for k in e.entry.keyframes] == [("first", 0.0), ("action", 3.0)]
    assert e.frames[1] is box
    # the same frame not kept by rule (a real change everywhere) may be the action
    (e,), _ = run(frames, kept, full=[i == 0 for i in range(20)])
    assert [(k.role, k.pts) for k in e.entry.keyframes] == [("first", 0.0)]  # frame 12: the still view again


def test_the_action_is_neither_the_first_nor_the_last_frame() -> None:
    """An entry whose first frame (a fade-in's end: everything changed) and last frame (something else came) keep the
    most tokens still shows what happened between them: up to 3 distinct pictures."""
    a = picture(14)
    frames = [a] * 10
    frames[4] = box = with_box(a, 100)
    frames[9] = other = with_box(a, 300, shade=0)
    kept = [200, 0, 0, 0, 10, 0, 0, 0, 0, 30]
    (e,), cuts = run(frames, kept, full=[False] * 10)
    assert cuts == []
    assert [(k.role, k.pts) for k in e.entry.keyframes] == [("first", 0.0), ("action", 2.0), ("last", 4.5)]
    assert e.frames[0] is a and e.frames[1] is box and e.frames[2] is other
    # no frame between them kept anything: first and last only
    (e,), _ = run(frames, [200] + [0] * 8 + [30], full=[False] * 10)
    assert [k.role for k in e.entry.keyframes] == ["first", "last"]


def still_view_with_events(seconds: float, events: list[tuple[float, float]]) -> tuple[list[np.ndarray], list[int]]:
    """A still view at FPS, sensor noise (a token kept now and then), a small object during each (start, end)."""
    a = picture(15)
    frames, kept = [], []
    boxes = [with_box(a, 60 * j) for j in range(len(events))]
    for i in range(int(seconds * FPS)):
        t = i / FPS
        on = [j for j, (s, e) in enumerate(events) if s <= t < e]
        frames.append(boxes[on[0]] if on else a)
        kept.append(12 if on else int(i % 7 == 0))
    kept[0] = 256
    return frames, kept


def test_events_minutes_apart_on_a_still_view_are_entries_of_their_own() -> None:
    """The entry follows activity: when it has ended (quiet QUIET_S) and the entry lasted MIN_ENTRY_S, it closes, so
    each event has its own entry and its own action keyframe."""
    frames, kept = still_view_with_events(200.0, [(20.0, 25.0), (150.0, 155.0)])
    entries, cuts = run(frames, kept)
    assert cuts == []
    assert MIN_ENTRY_S == 60.0 and QUIET_S == 5.0
    assert [(e.entry.chunk, e.entry.pts, e.entry.end_pts) for e in entries] == [
        (0, 0.0, 60.0),  # quiet since 24.5 s, but an entry lasts MIN_ENTRY_S
        (1, 60.0, 159.5),  # the second event ended at 154.5 s: quiet 5 s later
        (2, 159.5, 199.5),
    ]
    first, second = frames[int(22 * FPS)], frames[int(152 * FPS)]  # each event's object
    assert any(f is first for f in entries[0].frames) and not any(f is second for f in entries[0].frames)
    assert any(f is second for f in entries[1].frames) and not any(f is first for f in entries[1].frames)
    assert [k.role for k in entries[0].entry.keyframes] == ["first", "action"]  # the still view's last: the first


def test_entries_that_activity_closes_are_bounded() -> None:
    # a burst every 10 s (quiet 9 s between): never more than one entry per MIN_ENTRY_S
    frames, kept = still_view_with_events(400.0, [(10.0 * k, 10.0 * k + 1) for k in range(1, 40)])
    entries, _ = run(frames, kept, chunk_s=1000.0)
    assert [e.entry.pts for e in entries] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0]
    # a view that stays busy (never quiet QUIET_S) or busy alike all the time (its noise) closes at chunk_s only
    a = picture(16)
    for busy in ([40 if i % 2 else 8 for i in range(500)], [40] * 500):
        entries, _ = run([a] * 500, [256, *busy[1:]], chunk_s=100.0)
        assert [(e.entry.pts, e.entry.end_pts) for e in entries] == [(0.0, 100.0), (100.0, 200.0), (200.0, 249.5)]


def test_a_long_still_scene_becomes_chunks_of_chunk_s() -> None:
    a = picture(5)
    entries, cuts = run([a] * 61, chunk_s=10.0)  # 30 s of one still view
    assert cuts == []
    assert [(e.entry.scene, e.entry.chunk, e.entry.pts, e.entry.end_pts) for e in entries] == [
        (1, 0, 0.0, 10.0),
        (1, 1, 10.0, 20.0),
        (1, 2, 20.0, 30.0),
        (1, 3, 30.0, 30.0),
    ]
    assert all(1 <= len(e.entry.keyframes) <= 3 for e in entries)
    assert entries[1].entry.keyframes[0].pts == 10.0  # each chunk has pictures of its own


def test_a_scene_that_starts_black_takes_its_first_keyframe_from_the_content_that_follows() -> None:
    a, b = picture(6), picture(7)
    entries, cuts = run([a] * 8 + [BLACK] * 6 + [b] * 8)  # dark for 3 s: a scene of its own, then b
    assert cuts == [4.0, 7.0]
    black = entries[1]
    assert [k.role for k in black.entry.keyframes] == ["first"] and not black.frames[0].any()  # nothing but black
    # lights off for 1 s, then another picture: the black is a boundary at once; with the cut out of black on its
    # own (the detector fix) b starts the next scene; either way no entry's "first" is black when content follows
    entries, cuts = run([a] * 8 + [BLACK] * 2 + [b] * 8)
    for e in entries:
        if any(x.any() for x in e.frames):
            assert e.frames[0].any(), e.entry
    assert same(entries[-1].frames[0], b)


def test_a_fade_in_from_black() -> None:
    a = picture(8).astype(np.float32)
    fade = [(a * g).astype(np.uint8) for g in (0.0, 0.0, 0.0, 0.0, 0.3, 0.6, 1.0)]
    entries, cuts = run(fade + [a.astype(np.uint8)] * 6)  # starts black 2 s, fades in
    assert cuts == [2.0]
    first = entries[-1]
    assert first.entry.keyframes[0].role == "first" and first.frames[0].any()
    assert first.entry.keyframes[0].pts == 2.0  # the first frame with content (faint) starts it


def test_a_one_frame_flash_is_no_entry_and_no_keyframe() -> None:
    a = picture(9)
    frames = [a] * 8 + [WHITE] + [a] * 8
    (e,), cuts = run(frames, [256] + [2] * 7 + [256, 256] + [2] * 7)  # DTD keeps everything on and after the flash
    assert cuts == []
    assert all(same(f, a) for f in e.frames)  # the white frame (most tokens kept) is not the action


def test_close_returns_the_open_entry_once() -> None:
    a = picture(10)
    tr = EntryTracker("cam", scene=4, chunk_s=300.0)
    assert tr.close() == []  # nothing seen
    for i in range(3):
        assert tr.update(i / 2, 50.0 + i / 2, a, 3) == []
    (e,) = tr.close()
    assert (e.entry.scene, e.entry.pts, e.entry.end_pts, e.entry.end_wall_time) == (4, 0.0, 1.0, 51.0)
    assert tr.close() == []


@pytest.mark.parametrize("late", [1, 3])
def test_a_change_reported_late_moves_the_new_scenes_frames(late: int) -> None:
    """A change named `late` frames after its first frame: those frames start the new entry."""
    a, b = picture(11), picture(12)
    tr = EntryTracker("cam")
    from livesight.types import SceneChange

    out: list[ClosedEntry] = []
    for i in range(12):
        t = i / 2
        f = a if i < 6 else b
        change = SceneChange("cam", 2, 3.0, 1003.0, 5.0) if i == 6 + late else None
        out += tr.update(t, 1000.0 + t, f, 3, change)
    out += tr.close()
    assert [(e.entry.scene, e.entry.pts, e.entry.end_pts) for e in out] == [(1, 0.0, 3.0), (2, 3.0, 5.5)]
    assert all(same(f, a) for f in out[0].frames) and all(same(f, b) for f in out[1].frames)


def test_keyframes_are_scaled_to_keyframe_px_never_up() -> None:
    from livesight.imaging import decode_jpeg, encode_jpeg

    big = np.zeros((720, 1280, 3), np.uint8)
    big[:, :640] = 200
    pic = decode_jpeg(encode_jpeg(big, 80, max_side=640))
    assert pic.shape == (360, 640, 3) and abs(int(pic[10, 10, 0]) - 200) < 8 and pic[10, 630, 0] < 8
    small = picture(1)
    assert decode_jpeg(encode_jpeg(small, 80, max_side=640)).shape == small.shape
    with pytest.raises(ValueError, match="not a JPEG"):
        decode_jpeg(b"not a picture")
