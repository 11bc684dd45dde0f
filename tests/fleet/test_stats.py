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


def test_a_large_fleets_cameras_come_in_turn_and_small_ones_whole() -> None:
    from livesight.gateway.stats import StatsPacer

    pacer = StatsPacer(per_event=3)
    assert pacer.next_event(1.0, clients=0) is None  # nothing reported yet
    pacer.report("a", {"cameras": {"c1": {"f": 1}, "c2": {"f": 1}}, "totals": {"tokens_total": 10}})
    pacer.report("b", {"cameras": {"c3": {"f": 1}, "c4": {"f": 1}, "c5": {"f": 1}}, "totals": {"tokens_total": 5}})
    first = pacer.next_event(2.0, clients=7)
    assert first is not None and list(first["cameras"]) == ["c1", "c2", "c3"]  # the longest waiting first
    assert first["totals"]["tokens_total"] == 15 and first["totals"]["clients"] == 7 and first["totals"]["nodes"] == 2
    pacer.report("a", {"cameras": {"c1": {"f": 2}, "c2": {"f": 2}}, "totals": {"tokens_total": 12}})
    second = pacer.next_event(3.0, clients=7)
    assert second is not None and list(second["cameras"]) == ["c4", "c5", "c1"]  # in turn: c4, c5 waited longer
    assert second["cameras"]["c1"] == {"f": 2}  # the newest numbers
    third = pacer.next_event(4.0, clients=7)
    assert third is not None and list(third["cameras"]) == ["c2"]
    assert pacer.next_event(5.0, clients=7) is None  # nothing changed since
    assert len(pacer.snapshot(6.0, clients=1)["cameras"]) == 3  # a new client: the totals and the first few
    pacer.forget("b")
    gone = pacer.next_event(7.0, clients=7)
    assert gone is not None and gone["totals"]["nodes"] == 1 and gone["cameras"] == {}
