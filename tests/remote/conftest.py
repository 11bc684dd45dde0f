"""The real llama.cpp server (bench/remote/llama_server.py), started once per test session when a test asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from livesight.bench.remote.llama_server import LlamaServer, build_gguf, server_available


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    why = server_available()
    if why is not None:
        pytest.skip(why)
    model, mmproj = build_gguf()
    with LlamaServer(model, mmproj) as srv:
        yield srv
