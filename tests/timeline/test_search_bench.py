"""The search benchmark's fill and measuring run end to end on a small timeline (figures: docs/timeline.md)."""

from __future__ import annotations

from pathlib import Path

from livesight.bench.timeline_search import fill, queries, run


def test_fill_and_run_report_every_query_kind(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    fill(db, 3000)
    out = run(3000, repeats=2, db=db)
    assert out["rows"] == 3000 and set(out["queries"]) == set(queries(0.0, __import__("random").Random()))
    for kind, q in out["queries"].items():
        assert q["p95_ms"] >= q["p50_ms"] >= 0, kind
    assert out["queries"]["common_word"]["hits_per_query"] == 20  # the synthetic captions are searchable
    assert out["queries"]["list_newest"]["hits_per_query"] == 20
