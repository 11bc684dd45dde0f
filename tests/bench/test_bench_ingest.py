from __future__ import annotations

from pathlib import Path

from tests.bench.run import bench_quick


def test_bench_ingest_quick(tmp_path: Path) -> None:
    data = bench_quick("ingest", tmp_path, timeout=120)
    kinds = [row["source kind"] for row in data["summary"]]
    assert any(k.startswith("lavfi") for k in kinds) and any(k.startswith("builtin") for k in kinds)
    assert all(row["decoded_fps"] > 0 for row in data["summary"])
    slow = data["slow_consumer"]
    assert slow["dropped"] > 0 and slow["max_queue_len"] <= slow["queue_bound"]
    assert (tmp_path / "ingest.png").is_file() and data["machine"]["cores"]
