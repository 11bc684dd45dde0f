from __future__ import annotations

from pathlib import Path

from tests.bench.run import bench_quick


def test_bench_e2e_quick(tmp_path: Path) -> None:
    data = bench_quick("e2e", tmp_path, 300)
    cut = data["cut_latency"]["this"]
    assert cut["cuts_measured"] >= 1 and 0 < cut["median_ms"] < 10_000 and cut["late_scene_changes"] == 0
    assert cut["answer_tokens_per_s_median"] > 0
    # every cut of builtin:demo falls on a 2 fps tick: its frame is held by the tap and taken at its confirmation
    assert cut["tap_takes"] is not None and cut["tap_takes"] >= cut["cuts_measured"]
    parts = cut["parts_ms_median"]  # cut → first token, in consecutive parts that add up
    assert set(parts) == {
        "detection",
        "sampling",
        "frame queue",
        "encode + DTD + scene + memory",
        "proactive queue",
        "first token",
        "total",
    }
    assert all(v >= 0 for k, v in parts.items() if k != "sampling")
    base = data["no_dropping"]
    assert base["dtd"] == "off" and base["token_drop_ratio"] == 0.0 and data["one_camera"]["token_drop_ratio"] > 0.5
    stages = data["one_camera"]["stage_ms_per_frame"]
    assert set(stages) == {"prepare + pre-check", "vision encoder", "DTD decision", "scenes + memory + KV prefill"}
    assert all(v >= 0 for v in stages.values()) and stages["vision encoder"] > 0
    v = data["with_viewers"]["viewers"]
    # every poll answered with a new frame or "unchanged" (how many of each depends on timing: a poll every 250 ms of a
    # camera sampled at 10 fps mostly finds a new frame; If-None-Match → 304 is tested in tests/daemon/test_images.py)
    assert v["viewers"] == 5 and v["new_frames_200"] >= 1 and v["refused_503"] == 0
    assert v["new_frames_200"] + v["unchanged_304"] == v["requests"]
    assert v["jpegs_encoded"] <= v["new_frames_200"]  # viewers of one frame share its encoding
    assert (tmp_path / "e2e_cut_latency.png").is_file() and (tmp_path / "e2e_latency_parts.png").is_file()
