from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_ingest_quick(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "livesight", "bench", "ingest", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "ingest.json").read_text())
    kinds = [row["source kind"] for row in data["summary"]]
    assert any(k.startswith("lavfi") for k in kinds) and any(k.startswith("builtin") for k in kinds)
    assert all(row["decoded_fps"] > 0 for row in data["summary"])
    slow = data["slow_consumer"]
    assert slow["dropped"] > 0 and slow["max_queue_len"] <= slow["queue_bound"]
    assert (tmp_path / "ingest.png").is_file() and data["machine"]["cores"]
