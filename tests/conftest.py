"""Fixtures shared across test packages (the functions behind them: tests/helpers.py).

- `broker`: one Mosquitto broker for the whole session (tests keep apart by `prefix`)
- `tiny_backend`: the tiny random-weight Qwen2.5-VL, built once per session
- `running`: the web face over the daemon's real Service and model worker with the echo backend (tests/pipeline.py)

Marked `slow` here, whole folders: the benchmarks (subprocesses), the soak suite and chaos runs; `serial` the soak
suite (it compares the pipeline's throughput with and without load, so `make test` runs it alone, before the rest
runs in pytest-xdist workers). Single slow tests carry the marker themselves. `make test-quick` runs
`-m "not slow"`; `make test` runs everything.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.helpers import Running
from tests.mosquitto import MOSQUITTO, Mosquitto

_prefixes = itertools.count(1)
SLOW_FOLDERS = ("bench", "soak", "chaos")
SERIAL_FOLDERS = ("soak",)  # the soak suite compares throughput with and without load: alone, after the others
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if parts and parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
        if parts and parts[0] in SERIAL_FOLDERS:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("needs mosquitto (scripts/system-deps.sh)")
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{os.getpid()}/{next(_prefixes)}"  # retained messages of one test never reach another


@pytest.fixture(scope="session")
def tiny_backend() -> Any:
    return helpers.tiny_backend()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    r = await helpers.start_server()
    try:
        yield r
    finally:
        await helpers.stop_server(r)
