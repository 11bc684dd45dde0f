"""Fixtures shared across test packages (the functions behind them: tests/helpers.py).

- `broker`: one Mosquitto broker for the whole session (tests keep apart by `prefix`)
- `tiny_backend`: the tiny random-weight Qwen2.5-VL, built once per session
- `running`: the web face over the daemon's real Service and model worker with the echo backend (tests/pipeline.py)
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
