"""What a remote server is shown: crops of exactly the changed regions, whole frames at cuts, bounded memory, a stable
request order (captions oldest first, images oldest first after their time), byte-identical images when re-sent."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
from PIL import Image

from livesight.config import parse_config
from livesight.memory.remote_images import FeedGate, change_boxes, image_tokens, plan_images, render_images
from livesight.memory.remote_memory import TIMELINE_CHARS, RemoteMemory
from livesight.types import DTDStep, SceneChange

GRID = (9, 16)  # 252 x 448 px


def cfg(**model):
    return parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo"}],
            "model": {"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "name": "m", **model},
            "memory": {"max_captions": 4},
        },
        origin="test",
    )


def mask(cells: list[tuple[int, int]], grid=GRID) -> np.ndarray:
    m = np.zeros(grid, bool)
    for r, c in cells:
        m[r, c] = True
    return m.reshape(-1)


def step(pts: float, keep: np.ndarray, *, full: bool = False) -> DTDStep:
    return DTDStep("cam", pts, 1000.0 + pts, GRID, keep, keep.astype(np.float32), not keep.any(), 0.0, 0.0, full)


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (252, 448, 3), dtype=np.uint8)


def test_change_boxes_cover_each_changed_area_at_least_2x2_and_merge_to_the_limit() -> None:
    keep = mask([(1, 1), (1, 2), (7, 13)])
    assert change_boxes(keep, GRID, max_crops=3) == [(1, 1, 3, 3), (7, 13, 9, 15)]
    assert change_boxes(keep, GRID, max_crops=3, pad=1) == [(0, 0, 3, 4), (6, 12, 9, 15)]
    assert change_boxes(mask([(8, 15)]), GRID, max_crops=3) == [(7, 14, 9, 16)], "grown inwards at the edge"
    # more areas than max_crops merge where it costs the least area
    far = mask([(0, 0), (0, 15), (8, 0), (8, 15), (4, 7)])
    boxes = change_boxes(far, GRID, max_crops=2)
    assert len(boxes) == 2
    covered = np.zeros(GRID, bool)
    for r0, c0, r1, c1 in boxes:
        covered[r0:r1, c0:c1] = True
    assert covered.reshape(-1)[far].all()
    assert change_boxes(mask([]), GRID, 3) == []


def test_a_frame_is_sent_whole_when_most_of_it_changed_or_a_scene_starts() -> None:
    small = mask([(4, 4)])
    assert plan_images(small, GRID, whole=False, full_fraction=0.4, max_crops=3) == [(4, 4, 6, 6)]
    assert plan_images(small, GRID, whole=True, full_fraction=0.4, max_crops=3) is None
    most = np.ones(GRID[0] * GRID[1], bool)
    most[:10] = False
    assert plan_images(most, GRID, whole=False, full_fraction=0.4, max_crops=3) is None


def test_the_feed_gate_sends_news_within_its_token_budget_and_never_leaves_the_server_behind() -> None:
    whole_cost = 144 + 2
    gate = FeedGate(full_fraction=0.4, max_crops=3, tokens_per_min=30 * 60, burst=2 * whole_cost)  # 30 tokens/s
    everything, nothing, small = np.ones(144, bool), mask([]), mask([(4, 4)])
    assert gate.plan(nothing, GRID, 0.0) is None, "the first frame is sent whole, changed or not"
    assert gate.plan(nothing, GRID, 0.5) is False
    assert gate.plan(small, GRID, 1.0) == [(4, 4, 6, 6)], "a small change: a crop of it"
    assert gate.plan(everything, GRID, 1.5) is False, "camera motion: over budget, held back"
    t, plan = 2.0, False
    while plan is False and t < 20:
        plan = gate.plan(nothing, GRID, t)  # nothing new: the held-back change is still owed
        t += 0.5
    assert plan is None and 4.0 < t < 12.0, "sent whole once the bucket refilled, though DTD kept nothing since"
    assert gate.plan(everything, GRID, t) is False, "motion again right after: only a whole frame's worth is left"
    gate.scene_started()
    assert gate.plan(everything, GRID, t + 0.5) is None, "a scene start may spend that reserve"


def test_the_feed_gate_never_spends_more_than_its_budget() -> None:
    rng = np.random.default_rng(3)
    gate = FeedGate(full_fraction=0.4, max_crops=3, tokens_per_min=600, burst=300)
    spent, t = 0, 0.0
    for i in range(2000):
        keep = rng.random(144) < rng.choice([0.0, 0.02, 0.1, 0.9])
        if i % 37 == 0:
            gate.scene_started()
        plan = gate.plan(keep, GRID, t)
        if plan is not False:
            spent += 146 if plan is None else sum(max(4, (r1 - r0) * (c1 - c0)) + 2 for r0, c0, r1, c1 in plan)
        t += 0.5
    assert spent <= 300 + 10 * t, "burst + rate x time"
    assert gate.held_back > 0 and spent > 0.8 * 10 * t, "and it does spend it when there is news"


def test_crops_are_the_changed_pixels_on_the_token_grid_with_exact_token_estimates() -> None:
    yy, xx = np.mgrid[0:252, 0:448]
    f = np.stack([xx // 28 * 15, yy // 28 * 25, np.full_like(xx, 128)], axis=-1).astype(np.uint8)  # a colour per cell
    boxes = plan_images(mask([(3, 3), (4, 4)]), GRID, whole=False, full_fraction=0.4, max_crops=3)
    (img,) = render_images(f, boxes, scene=1, pts=2.0, wall_time=0.0, quality=95)
    assert img.box == (84, 84, 140, 140) and img.tokens == 4 + 2 == image_tokens(56, 56)
    decoded = np.asarray(Image.open(io.BytesIO(img.jpeg)))
    assert decoded.shape == (56, 56, 3)
    assert np.abs(decoded.astype(int) - f[84:140, 84:140].astype(int)).mean() < 6  # JPEG of that very region
    assert base64.b64decode(img.data_url.split(",", 1)[1]) == img.jpeg
    assert img.label() == "t=2.0s, changed region x 84-140, y 84-140 of the 448x252 view:"
    (whole,) = render_images(f, None, scene=1, pts=2.0, wall_time=0.0, quality=95)
    assert whole.box is None and whole.tokens == 144 + 2
    assert image_tokens(28, 28) == 4 + 2, "below 56x56 a server scales up: it costs as much"


def test_memory_is_bounded_by_count_and_bytes_and_keeps_the_newest_whole_frame() -> None:
    c = cfg(keep_images=5, keep_bytes=64 * 1024)
    mem = RemoteMemory("cam", c.model, c.memory)
    mem.add_step(step(0.0, np.ones(144, bool), full=True), None, frame(0))
    for i in range(1, 40):
        mem.add_step(step(float(i), mask([(i % 9, i % 16)])), None, frame(i))
        s = mem.stats()
        assert s["remote_images"] <= 5 + 1 and s["remote_image_bytes"] <= 64 * 1024 + 200_000
    s = mem.stats()
    assert s["images_evicted"] > 0 and s["whole_frames"] == 1 and s["crops"] == 39
    req = mem.question_request("what now?")
    images = [p for p in req.messages[1]["content"] if p["type"] == "image_url"]
    assert len(images) <= c.model.images_per_request
    labels = [p["text"] for p in req.messages[1]["content"] if p["type"] == "text"]
    assert labels[1].startswith("t=0.0s, whole view"), "the whole frame the crops change comes first"
    times = [float(t.split("s,")[0][2:]) for t in labels[1:-1]]
    assert times == sorted(times) and times[-1] == 39.0, "oldest first, newest last"


def test_an_unchanged_frame_adds_nothing_and_a_re_sent_image_is_byte_identical() -> None:
    c = cfg()
    mem = RemoteMemory("cam", c.model, c.memory)
    mem.add_step(step(0.0, np.ones(144, bool), full=True), None, frame(0))
    mem.add_step(step(1.0, mask([])), None, frame(1))
    assert mem.stats()["frames_with_news"] == 1
    a = mem.question_request("q1")
    b = mem.question_request("q2")
    assert a.messages[:1] == b.messages[:1] and a.messages[1]["content"][:-1] == b.messages[1]["content"][:-1]
    assert a.image_tokens == 146 and a.images == 1
    assert a.new_image_tokens == 146 and b.new_image_tokens == 0, "the second request re-sends the same image"


def test_captions_of_closed_scenes_form_a_timeline_oldest_first_bounded_in_count_and_size() -> None:
    c = cfg()
    mem = RemoteMemory("cam", c.model, c.memory)
    pending: list[int] = []
    mem.on_pending = lambda: pending.append(1)
    t = 0.0
    for scene in range(2, 9):
        mem.add_step(step(t, np.ones(144, bool), full=True), None, frame(int(t)))
        mem.add_step(step(t + 1, mask([(1, 1)])), None, frame(int(t) + 1))
        mem.on_scene_change(SceneChange("cam", scene, t + 2, time.time(), 1.0))
        closed = mem.next_caption(time.monotonic())
        assert closed is not None and closed.scene == scene - 1
        req = mem.caption_request(closed)
        assert req.images == 2 and req.messages[1]["content"][1]["text"].startswith(f"t={t:.1f}s, whole view")
        mem.caption_done(closed, f"scene {scene - 1} had a {'long ' * 10}story")
        t += 3
    assert len(pending) == 7 and mem.captions_pending == 0
    lines = mem.captions()
    assert len(lines) == 4, "memory.max_captions: older lines merged"
    assert lines[0].startswith("[scene 1,") and " / scene 4 had" in lines[0] and "scene 7 had" in lines[-1]
    req = mem.question_request("what happened?")
    intro = req.messages[1]["content"][0]["text"]
    assert intro.index("scene 6 had") < intro.index("scene 7 had") and len(intro) <= TIMELINE_CHARS + 100


def test_a_failed_caption_is_retried_later_then_given_up() -> None:
    c = cfg()
    mem = RemoteMemory("cam", c.model, c.memory)
    mem.add_step(step(0.0, np.ones(144, bool), full=True), None, frame(0))
    mem.on_scene_change(SceneChange("cam", 2, 1.0, time.time(), 1.0))
    closed = mem.next_caption(time.monotonic())
    assert closed is not None
    mem.caption_failed(closed, retry_at=time.monotonic() + 60)
    assert mem.next_caption(time.monotonic()) is None and mem.captions_pending == 1
    mem.caption_failed(closed, retry_at=None)
    assert mem.captions_pending == 0 and mem.stats()["captions_given_up"] == 1
