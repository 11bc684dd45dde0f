"""The chaos test (issue #12): hypothesis over valid configurations × hostile sources (still, moving, cuts, a file
truncated mid-stream, a resolution change mid-stream, a one-frame file, a stalling network source, a missing file)
on the real daemon. A few short examples here (about a minute); `make soak` runs many more (scenario `chaos`).
Set LIVESIGHT_CHAOS_EXAMPLES to run more locally."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from livesight.model.qwen import QwenBackend
from tests.chaos.media import make_media
from tests.chaos.scenario import cases, run_case
from tests.helpers import tiny_backend

EXAMPLES = int(os.environ.get("LIVESIGHT_CHAOS_EXAMPLES", "5"))


@pytest.fixture(scope="module")
def backend() -> QwenBackend:
    return tiny_backend()  # the session's one tiny model (tests/helpers.py)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("chaos-media"))


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its case; keeps CI time bounded
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_chaos(case: dict, backend: QwenBackend, media: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory(prefix="livesight-chaos-") as tmp:
        try:
            asyncio.run(run_case(case, backend, media, Path(tmp), seconds=4.0))
        except AssertionError as e:
            raise AssertionError(f"{e}\ncase: {case}") from None
