from __future__ import annotations

from pathlib import Path

from tests.bench.run import bench_quick


def test_bench_scenes_quick(tmp_path: Path) -> None:
    data = bench_quick("scenes", tmp_path, timeout=240)
    rows = {(r["detector"], r["clips"].split()[0]): r for r in data["summary"]}
    ours = rows[("ours dtd @2 fps", "suite")]
    assert ours["f1"] >= 0.9 and ours["fp"] == 0  # the quick suite: stills, black gaps, fades and dissolves
    # 0: the boundary is declared on the new scene's first sampled frame (the tap confirmed it before that frame)
    assert ours["cut_latency_median_s"] is not None and 0 <= ours["cut_latency_median_s"] <= 1.0
    assert ours["cpu_ms_per_video_s"] < 50  # ≤ 5% of a core per camera at 2 fps
    assert data["tables"]["Per clip"] and data["notes"] and (tmp_path / "scenes_f1.png").is_file()
