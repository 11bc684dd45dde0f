"""`livesight bench remote`'s feed part on the generated demo stream (exact truth: a cut every 5 s, two moving
shapes): the scoring is right, and the daemon's path beats a fixed sampler on tokens and VSS-style chunks on recall."""

from __future__ import annotations

import numpy as np

from livesight.bench.remote.feed import (
    Delivery,
    change_recall,
    clip_frames,
    cut_recall,
    fixed_rate,
    ours,
    score,
    truth_changes,
    vss_chunks,
)


def test_recall_counts_only_what_reaches_the_server_in_time_and_shows_the_change() -> None:
    cells = np.zeros(16, bool)
    cells[:4] = True
    changes = [(10.0, cells)]
    crop = np.zeros(16, bool)
    crop[:2] = True
    assert change_recall(changes, [Delivery(10.0, 10.5, None, 18, 1)]) == 1.0
    assert change_recall(changes, [Delivery(10.0, 11.5, None, 18, 1)]) == 0.0, "too late"
    assert change_recall(changes, [Delivery(9.5, 9.5, None, 18, 1)]) == 0.0, "taken before the change"
    assert change_recall(changes, [Delivery(10.2, 10.2, crop, 6, 1)]) == 1.0, "half the changed regions"
    assert change_recall(changes, [Delivery(10.2, 10.2, ~cells, 6, 1)]) == 0.0, "elsewhere"
    assert cut_recall([5.0], [Delivery(5.0, 5.9, None, 18, 1)]) == 1.0
    assert cut_recall([5.0], [Delivery(5.0, 5.9, cells, 6, 1)]) == 0.0, "a cut needs the whole frame"


def test_on_the_demo_stream_ours_costs_less_than_1fps_and_recalls_more_than_vss() -> None:
    frames, cuts = clip_frames("demo", 60.0)
    assert cuts == [5.0 * k for k in range(1, 12)]
    duration = frames[-1][0] + 0.2
    truth = {"changes": truth_changes(frames), "cuts": cuts}
    fixed = score("demo", "fixed_1fps", fixed_rate(frames), duration, truth)
    vss = score("demo", "vss_chunks", vss_chunks(frames, duration), duration, truth)
    mine = score("demo", "ours", ours(frames, 1.0), duration, truth)
    assert fixed["change_recall"] > 0.95 and fixed["requests_per_h"] == 3600
    assert vss["requests_per_h"] == 120 and vss["images_per_h"] == 960
    assert mine["image_tokens_per_h"] < 0.3 * fixed["image_tokens_per_h"]
    assert mine["image_tokens_per_h"] < vss["image_tokens_per_h"]
    assert mine["change_recall"] > 2 * vss["change_recall"] and mine["cut_recall"] > vss["cut_recall"]
