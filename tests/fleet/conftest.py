from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.protocols.mosquitto import Mosquitto

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def prefix() -> str:
    return f"f{os.getpid()}/{next(_prefixes)}"  # retained messages of one test never reach another
