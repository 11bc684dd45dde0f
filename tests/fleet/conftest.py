"""Fixtures of the fleet tests (the helpers behind them: tests/fleet/inproc.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fleet.inproc import Gateway, Node, gateway, linked, start_node
from tests.mosquitto import Mosquitto


@pytest.fixture
async def fleet(broker: Mosquitto, prefix: str) -> AsyncIterator[tuple[dict[str, Node], Gateway]]:
    nodes = {n: await start_node(n, broker, prefix) for n in ("a", "b")}
    try:
        async with gateway(broker, prefix) as gw:
            await linked(gw, *nodes)
            yield nodes, gw
    finally:
        for n in nodes.values():
            await n.stop()
