from __future__ import annotations

from pathlib import Path

from tests.bench.run import bench_quick


def test_bench_dtd_quick(tmp_path: Path) -> None:
    data = bench_quick("dtd", tmp_path, timeout=240)
    rows = data["results"]
    clips = {row["clip"] for row in rows}
    assert "slow-drift (generated)" in clips
    # 3 feature + 3 pixel thresholds, both rules, per clip
    assert len(rows) == 12 * len(clips)
    for row in rows:
        assert 0.0 <= row["drop_ratio"] <= 1.0 and row["frames"] > 0
        if row["rule"] == "timechat":
            assert row["encoder_skipped"] == 0  # TimeChat-Online runs the encoder on every frame
        if row["rule"] == "ours" and row["mode"] == "pixel":
            # the last-kept reference bounds what the model may miss by τ, whatever the clip
            assert row["recall"] == 1.0 and row["max_stale"] < row["tau"] + 1e-6
    drift = {(r["rule"], r["mode"], r["tau"]): r for r in rows if r["clip"] == "slow-drift (generated)"}
    ours, theirs = drift[("ours", "pixel", 0.04)], drift[("timechat", "pixel", 0.04)]
    assert ours["drop_ratio"] < 1.0 and theirs["drop_ratio"] == 1.0  # the drift is kept only with last-kept
    assert theirs["max_stale"] > ours["max_stale"]
    assert ours["encoder_skipped"] > 0
    assert (tmp_path / "dtd_drop_ratio.png").is_file() and data["summary"] and data["notes"]
