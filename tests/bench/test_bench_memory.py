from __future__ import annotations

from pathlib import Path

from livesight.bench.memory import match
from tests.bench.run import bench_quick


def test_cut_matching() -> None:
    m = match([1.3, 4.0, 6.5], [1.2, 6.46, 8.38])
    assert m["precision"] == round(2 / 3, 3) and m["recall"] == round(2 / 3, 3) and m["missed"] == [8.38]
    assert match([], [])["f1"] == 1.0 and match([], [2.0])["recall"] == 0.0
    assert match([1.15], [1.2])["recall"] == 1.0 and match([1.0], [1.2])["recall"] == 0.0  # [-0.1 s, +0.5 s]


def test_bench_memory_quick(tmp_path: Path) -> None:
    data = bench_quick("memory", tmp_path, timeout=240)
    lat = data["latency"]
    rows = lat["checkpoints"]
    assert [row["stream_min"] for row in rows] == [1, 2, 4]
    # the budget held while the stream ran far past it, and old scenes became captions
    assert all(row["memory_tokens"] <= lat["token_budget"] for row in rows)
    assert rows[-1]["scenes_captioned"] > 0 and lat["scene_changes"] == 7  # a cut every 30 s for 4 min
    assert all(row["reprefill_ms"] > row["incremental_ms"] for row in rows)
    assert len(lat["rss_mib"]) == 4 and lat["rss_growth_mib"] is not None
    cuts = {(row["clip"], row["method"]): row for row in data["cuts"]["rows"]}
    if ("Megamind.avi", "PySceneDetect ContentDetector") in cuts:
        assert cuts[("Megamind.avi", "ours pixel τ=0.04, 4 fps")]["f1"] == 1.0
    assert all(row.get("false_cuts", 0) == 0 for row in cuts.values() if row["clip"].startswith("slow pan"))
    assert (tmp_path / "memory_ttft_rss.png").is_file() and (tmp_path / "memory_scene_cuts.png").is_file()
