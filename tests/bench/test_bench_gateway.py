from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import bench_quick
from tests.mosquitto import MOSQUITTO

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]


def test_bench_gateway_quick(tmp_path: Path) -> None:
    data = bench_quick("gateway", tmp_path, timeout=420)
    real = data["real_node"]
    s = real["samples"]
    assert len(s["direct_ttft"]) == len(s["gw_ttft"]) == real["questions_each"] == 10
    # every question went through both paths and got its first token after its response.created
    assert all(0 < c <= t for c, t in zip(s["gw_created"], s["gw_ttft"], strict=True))
    assert all(0 < c <= t for c, t in zip(s["direct_created"], s["direct_ttft"], strict=True))
    diff = real["gateway_ttft_ms_median"] - real["direct_ttft_ms_median"]
    assert abs(real["ttft_overhead_ms"] - diff) <= 0.011  # both rounded to 0.01 ms
    # fleet scale, quick: 200 cameras on 4 simulated nodes, 20 clients on one link per node
    (point,) = data["scale"]
    assert (point["cameras"], point["nodes"], point["clients"]) == (200, 4, 20)
    assert point["links_per_node_max"] == 1 and point["links_accepted_total"] == 4
    # the crowd asked, and got an answer to every question but those still on their way at its stop (one per client
    # at most: the fake nodes answer at once); nobody was dropped or refused
    assert point["crowd_dropped"] == 0 and point["crowd_refused"] == 0
    assert point["crowd_asked"] > 0, point
    assert point["crowd_asked"] - point["clients"] <= point["crowd_answers"] <= point["crowd_asked"], point
    assert point["healthz_requests"] > 5 and point["healthz_bytes"] > 200 * 40  # every camera in the body
    assert point["gateway_rss_mib"] > 0 and point["gateway_cpu_cores"] > 0
    assert len(point["samples"]["gw_ttft"]) == 10
    assert [r["setup"] for r in data["summary"]][1].startswith("200 cameras")
    assert set(data["targets"]) and data["notes"][0].startswith("Targets:")
