"""Fixtures shared across test packages: one Mosquitto broker for the whole session (tests keep apart by prefix)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocols.mosquitto import MOSQUITTO, Mosquitto

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
