"""The gateway never lets two live responses share an id on one client, whatever the nodes send.

Two fake nodes (real WebSocket servers on port 0 speaking the node protocol, as an old daemon would) answer every
question with the SAME response id; both answers are live at once, their deltas interleaved. Through the gateway
(real GatewayServer, directory fed the retained fleet messages) the client sees two distinct ids, each answer's
deltas under its own id, one done each; the clash is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from livesight.config import ServerConfig
from livesight.fleet import topics
from livesight.gateway.directory import Directory
from livesight.gateway.response_ids import ResponseIdGuard
from livesight.gateway.server import GatewayServer
from livesight.protocols.contract import events as ev
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, ResponseStatus
from tests.helpers import recv_until

PREFIX = "clash"
OWNERS = {"cam_a": "a", "cam_b": "b"}
SAME_ID = "resp_1a2411126b4_3"  # what two old nodes started together minted for different answers


class OldNode:
    """A node whose response ids collide with its neighbour's: every answer is `SAME_ID`. Each answer is created at
    once, then waits for `release` before its two deltas and its done."""

    def __init__(self, name: str, release: asyncio.Event) -> None:
        self.name = name
        self.release = release
        self.created = asyncio.Event()
        self.port = 0

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[OldNode]:
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    async def _handle(self, conn: ServerConnection) -> None:
        cams = [{"id": c, "state": "live", "reason": ""} for c, n in OWNERS.items() if n == self.name]
        hello = ev.encode_session_created(
            session_id="sess_1", cameras=cams, camera=cams[0]["id"], proactive=True, limits={}
        )
        await conn.send(ev.dumps(hello))
        async for raw in conn:
            msg = json.loads(raw)
            if msg.get("type") == "query":
                await self._answer(conn, msg["id"], msg["camera"])

    async def _answer(self, conn: ServerConnection, qid: str, camera: str) -> None:
        def send(e: Any) -> Any:
            return conn.send(ev.dumps(ev.encode_response(e, query_id=qid, kind="query")))

        await send(ResponseCreated(SAME_ID, camera, ResponseKind.QUERY, query_id=qid))
        self.created.set()
        await self.release.wait()
        text = ""
        for part in (f"from {self.name} ", f"about {camera}"):
            await send(ResponseDelta(SAME_ID, part))
            text += part
            await asyncio.sleep(0.01)  # the other node's deltas interleave
        await send(ResponseDone(SAME_ID, ResponseStatus.COMPLETED, text, completion_tokens=2))


def announce(directory: Directory, node: OldNode) -> None:
    directory.apply(PREFIX, topics.node_available_topic(PREFIX, node.name), topics.ONLINE)
    for cam, owner in OWNERS.items():
        if owner == node.name:
            url = f"ws://127.0.0.1:{node.port}"
            info = topics.CameraInfo(cam, node.name, url, model="old", state="live", reason="", wall_time=time.time())
            payload = json.dumps(topics.encode_camera_info(info)).encode()
            directory.apply(PREFIX, topics.camera_info_topic(PREFIX, cam), payload)


async def test_two_nodes_minting_one_id_reach_the_client_as_two_answers() -> None:
    release = asyncio.Event()
    a, b = OldNode("a", release), OldNode("b", release)
    async with a.serving(), b.serving():
        directory = Directory(OWNERS, nodes=["a", "b"])
        for n in (a, b):
            announce(directory, n)
        directory.set_mqtt(True, synced=True)
        server = GatewayServer(directory, ServerConfig(host="127.0.0.1", port=0), prefix=PREFIX)
        port = await server.start()
        try:
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                hello, _ = await recv_until(ws, lambda e: e["type"] == "session.created")
                assert {c["id"]: c["state"] for c in hello["cameras"]} == {"cam_a": "live", "cam_b": "live"}
                for q, cam in (("qa", "cam_a"), ("qb", "cam_b")):
                    await ws.send(json.dumps({"type": "query", "id": q, "text": "what?", "camera": cam}))
                await asyncio.wait_for(asyncio.gather(a.created.wait(), b.created.wait()), 10)
                release.set()
                events: list[dict[str, Any]] = []
                while sum(e["type"] == "response.done" for e in events) < 2:
                    e, _ = await recv_until(ws, lambda e: e["type"].startswith("response."))
                    events.append(e)
        finally:
            await server.close()
    created = {e["query_id"]: e["response_id"] for e in events if e["type"] == "response.created"}
    assert set(created) == {"qa", "qb"}
    assert len(set(created.values())) == 2, created  # one answer kept SAME_ID, the other got a fresh id
    assert SAME_ID in created.values()
    for qid, cam, node in (("qa", "cam_a", "a"), ("qb", "cam_b", "b")):
        rid = created[qid]
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.delta" and e["response_id"] == rid)
        assert deltas == f"from {node} about {cam}", (qid, events)  # its own deltas, none of the other's
        dones = [e for e in events if e["type"] == "response.done" and e["response_id"] == rid]
        assert len(dones) == 1 and dones[0]["query_id"] == qid and dones[0]["text"] == deltas
    assert server.metrics.response_id_clashes._value.get() == 1


def test_guard_renames_only_a_clash_across_nodes_and_forgets_finished_ones() -> None:
    clashes: list[tuple[str, str, str]] = []
    g = ResponseIdGuard(on_clash=lambda *a: clashes.append(a))
    assert g.outgoing("a", "response.created", "r1") == "r1"
    assert g.outgoing("a", "response.delta", "r1") == "r1"
    renamed = g.outgoing("b", "response.created", "r1")
    assert renamed != "r1" and renamed.startswith("resp_") and clashes == [("r1", "a", "b")]
    assert g.outgoing("b", "response.delta", "r1") == renamed
    assert g.outgoing("a", "response.done", "r1") == "r1"
    assert g.outgoing("b", "response.done", "r1") == renamed
    assert len(g) == 0
    # once both are done the id is free again: no rename for a later answer that reuses it
    assert g.outgoing("b", "response.created", "r1") == "r1" and len(clashes) == 1


def test_guard_is_bounded_and_forgets_a_dead_nodes_answers() -> None:
    g = ResponseIdGuard(max_live=3)
    g.outgoing("a", "response.created", "x")
    other = g.outgoing("b", "response.created", "x")
    assert other != "x"
    for i in range(5):
        g.outgoing("a", "response.created", f"y{i}")
    assert len(g) == 3  # the oldest forgotten first, renames with them
    assert g.outgoing("b", "response.delta", "x") == "x"
    g.forget_node("a")
    assert len(g) == 0
    assert g.outgoing("b", "response.created", "y4") == "y4"  # a's live y4 is gone with its link
