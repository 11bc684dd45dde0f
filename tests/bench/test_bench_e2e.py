from __future__ import annotations

from pathlib import Path

from tests.bench.run import bench_quick


def test_bench_e2e_quick(tmp_path: Path) -> None:
    data = bench_quick("e2e", tmp_path, timeout=240)
    cut = data["cut_latency"]
    assert cut["cuts_measured"] >= 1 and 0 < cut["cut_to_first_proactive_token_ms_median"] < 10_000
    assert cut["answer_tokens_per_s_median"] > 0
    assert [c["cameras"] for c in data["capacity"]] == [1, 2, 4]
    assert all(c["frames_per_s_total"] > 0 and 0 <= c["dropped_share"] <= 1 for c in data["capacity"])
    base = data["no_dropping"]
    assert base["dtd"] == "off" and base["token_drop_ratio"] == 0.0 and data["capacity"][0]["token_drop_ratio"] > 0.5
    stages = data["capacity"][0]["stage_ms_per_frame"]
    assert set(stages) == {"prepare + pre-check", "vision encoder", "DTD decision", "scenes + memory + KV prefill"}
    assert all(v >= 0 for v in stages.values()) and stages["vision encoder"] > 0
    v = data["with_viewers"]["viewers"]
    assert v["viewers"] == 5 and v["new_frames_200"] >= 1 and v["unchanged_304"] >= 1
    assert v["jpegs_encoded"] <= v["new_frames_200"]  # viewers of one frame share its encoding
    assert data["with_viewers"]["frames_per_s_total"] > 0
    assert (tmp_path / "e2e_capacity.png").is_file() and (tmp_path / "e2e_stages.png").is_file()
