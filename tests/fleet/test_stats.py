from __future__ import annotations

from livesight.gateway.stats import merge_stats


def test_merge_sums_totals_and_recomputes_ratios() -> None:
    a = {"cameras": {"door": {"frames_in": 5}}, "totals": {"tokens_total": 100, "tokens_kept": 10, "clients": 1,
                                                           "drop_ratio": 0.9, "ttft_ms_median": 20.0}}  # fmt: skip
    b = {"cameras": {"gate": {"frames_in": 7}}, "totals": {"tokens_total": 300, "tokens_kept": 90, "clients": 2,
                                                           "drop_ratio": 0.7, "ttft_ms_median": None}}  # fmt: skip
    m = merge_stats([a, b], now=12.5)
    assert m == {
        "type": "stats",
        "wall_time": 12.5,
        "cameras": {"door": {"frames_in": 5}, "gate": {"frames_in": 7}},
        "totals": {"tokens_total": 400, "tokens_kept": 100, "clients": 3, "drop_ratio": 0.75, "ttft_ms_median": 20.0,
                   "nodes": 2},
    }  # fmt: skip
    assert merge_stats([], now=1.0)["totals"] == {"drop_ratio": 0.0, "ttft_ms_median": None, "nodes": 0}
    assert merge_stats([{"totals": "garbage", "cameras": []}], now=1.0)["cameras"] == {}
