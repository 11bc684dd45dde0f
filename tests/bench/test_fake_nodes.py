"""bench/fleet's simulated nodes serve on the real nodes' stack (uvicorn + Starlette, the door of
protocols/web/fleet_link.py): what a gateway meets at the HTTP and WebSocket level is what a daemon answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from livesight.bench.fleet.fake_nodes import MAX_MESSAGE_BYTES, FakeNode
from livesight.config import ServerConfig
from livesight.protocols.web.fleet_link import LINK_LIMITS
from livesight.protocols.web.transport import Transport

TOKEN = "fleet-secret"


@pytest.fixture
async def node() -> AsyncIterator[FakeNode]:
    n = FakeNode("n1", 0, ["cam1", "cam2"], TOKEN, stats_interval_s=60.0, scene_every_s=0.0)
    cfg = ServerConfig(host="127.0.0.1", port=0, max_message_bytes=MAX_MESSAGE_BYTES)
    transport = await Transport.start(n.app(), cfg, LINK_LIMITS, server_header="livesight-fake")
    n.port = transport.port
    yield n
    transport.stop_listening()
    await transport.stop()


async def test_the_link_door_is_the_real_one(node: FakeNode) -> None:
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Origin": "http://x"}, 403)):
        with pytest.raises(InvalidStatus) as e:
            async with connect(f"ws://127.0.0.1:{node.port}/fleet", additional_headers=headers):
                pass
        assert e.value.response.status_code == status
        assert (e.value.response.headers.get("www-authenticate") is not None) == (status == 401)
    assert node.counts.links_accepted == 0


async def test_a_link_and_a_direct_client_are_answered(node: FakeNode) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        connect(f"ws://127.0.0.1:{node.port}/fleet", additional_headers=auth) as link,
        connect(f"ws://127.0.0.1:{node.port}/") as direct,
    ):
        for ws in (link, direct):
            hello = json.loads(await ws.recv())
            assert hello["type"] == "session.created"
            assert [c["id"] for c in hello["cameras"]] == ["cam1", "cam2"]
        await link.send(json.dumps({"type": "query", "id": "q1", "text": "?", "camera": "cam2"}))
        events = [json.loads(await link.recv()) for _ in range(6)]
        assert [e["type"] for e in events] == ["response.created", *["response.delta"] * 4, "response.done"]
        assert {e["query_id"] for e in events} == {"q1"}
        assert (node.counts.links_open, node.counts.links_accepted, node.counts.direct_accepted) == (1, 1, 1)
        assert node.counts.queries == 1
    # the node goes on after its clients left, and counts the link as closed
    async with connect(f"ws://127.0.0.1:{node.port}/fleet", additional_headers=auth) as link:
        assert json.loads(await link.recv())["type"] == "session.created"
        assert (node.counts.links_max, node.counts.links_accepted) == (1, 2)
