from __future__ import annotations

from pathlib import Path

from livesight.bench.daemon_proc import this_tree
from tests.bench.run import bench_quick


def test_bench_capacity_quick_with_a_baseline(tmp_path: Path) -> None:
    """Two `livesight serve` subprocesses (this checkout, and the same checkout as the `--baseline`), read from
    outside: frames, drops, scene changes, proactive messages, question TTFT, CPU."""
    data = bench_quick("capacity", tmp_path, 300, "--cameras", "2", "--baseline", str(this_tree()))
    rows = data["rows"]
    assert [(r["footage"], r["cameras"], r["code"]) for r in rows] == [("demo", 2, "this"), ("demo", 2, "baseline")]
    for r in rows:
        assert 0 < r["processed_fps"] <= 2 * 2 * 1.5 and 0 <= r["dropped_share"] <= 1
        assert r["per_camera_fps_min"] <= r["per_camera_fps_max"] and r["cpu_cores"] > 0
        assert r["questions_answered"] >= 1 and r["question_ttft_ms_p95"] >= r["question_ttft_ms_p50"] > 0
        assert r["captions_done"] is not None and r["proactive_shed"] is not None  # this checkout has the counters
    assert (tmp_path / "capacity.png").is_file() and data["notes"]
