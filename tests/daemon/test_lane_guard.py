"""The per-camera error boundary's bookkeeping, on a controlled clock."""

from __future__ import annotations

import logging

import pytest

from livesight.config import ReconnectConfig
from livesight.daemon.lane_guard import LaneGuard


def test_failures_in_a_row_enter_error_backoff_then_recover(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    calls: list[tuple[str, str | None]] = []
    g = LaneGuard(
        "cam",
        max_failures=3,
        retry=ReconnectConfig(initial_s=1.0, max_s=4.0, jitter=0.0),
        on_error=lambda c, r: calls.append((c, r)),
        clock=lambda: now[0],
    )
    caplog.set_level(logging.ERROR, logger="livesight.daemon.lane_guard")
    g.failed("vision encoder", RuntimeError("boom"))
    g.succeeded()  # a good frame in between: the count starts over
    for _ in range(2):
        g.failed("vision encoder", RuntimeError("boom"))
    assert g.error is None and g.available() and calls == []
    g.failed("DTD", ValueError("bad grid"))
    assert g.error is not None and "3 frames failed in a row" in g.error and "ValueError: bad grid" in g.error
    assert calls == [("cam", g.error)] and not g.available()
    now[0] += 1.0
    assert g.available()  # backoff over: one retry
    g.failed("DTD", ValueError("bad grid"))
    assert not g.available() and "retry 2 in 2.0s" in (g.error or "")  # the wait doubles
    now[0] += 2.0
    g.succeeded()
    assert g.error is None and calls[-1] == ("cam", None) and g.failed_total == 5
    # each kind is logged once (with its traceback), all are counted
    logged = [r for r in caplog.records if "frame failed" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
