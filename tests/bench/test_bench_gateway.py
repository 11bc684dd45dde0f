from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import bench_quick
from tests.mosquitto import MOSQUITTO

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)")


def test_bench_gateway_quick(tmp_path: Path) -> None:
    data = bench_quick("gateway", tmp_path, timeout=240)
    s = data["samples"]
    assert len(s["direct_ttft"]) == len(s["gw_ttft"]) == data["questions_each"] == 10
    # every question went through both paths and got its first token after its response.created
    assert all(0 < c <= t for c, t in zip(s["gw_created"], s["gw_ttft"], strict=True))
    assert all(0 < c <= t for c, t in zip(s["direct_created"], s["direct_ttft"], strict=True))
    diff = data["gateway_ttft_ms_median"] - data["direct_ttft_ms_median"]
    assert abs(data["ttft_overhead_ms"] - diff) <= 0.011  # both rounded to 0.01 ms
    assert "overhead" in data["summary"]
