"""Chaos: many random cases of valid configurations × hostile sources (still, moving, cuts, a file truncated
mid-stream, a resolution change mid-stream, a one-frame file, a stalling network source, a missing file) on the
real daemon; each must keep the daemon alive, every camera live or in a named failure state, no frame failed, a
question to each camera answered and every committed row in the event log (tests/chaos/scenario.py)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from tests.chaos.media import make_media
from tests.chaos.scenario import Outcome, cases, run_case, summarize
from tests.helpers import tiny_backend
from tests.soak.common import Result


async def run(quick: bool) -> Result:
    n = 6 if quick else 40
    seconds = 4.0 if quick else 8.0
    res = Result("chaos", f"{n} random cases of 1-3 hostile sources × valid configs, {seconds:.0f} s each")
    backend = await asyncio.to_thread(tiny_backend)
    outcomes: list[Outcome] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="livesight-chaos-") as d:
        media = await asyncio.to_thread(make_media, Path(d) / "media")
        cases_dir = Path(d)

        def one(case: dict) -> None:
            tmp = Path(tempfile.mkdtemp(dir=cases_dir))
            try:
                outcomes.append(asyncio.run(run_case(case, backend, media, tmp, seconds)))
            except AssertionError as e:
                failures.append(f"{e} (case: {case})")

        prop = settings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        )(given(case=cases())(one))
        t0 = time.monotonic()
        await asyncio.to_thread(prop)  # each case runs its own event loop in this worker thread
        elapsed = time.monotonic() - t0
    res.figures.update(summarize(outcomes))
    res.figures["seconds_per_case"] = round(elapsed / max(1, n), 1)
    res.check(not failures, f"all {n} cases held", f"{len(failures)} case(s) did not hold: {failures[:3]}")
    res.check(res.figures.get("answers", 0) > 0, f"{res.figures.get('answers')} questions answered")
    res.lost.append("nothing committed (every delivered answer and published scene change was in the event log)")
    return res
