"""One link per node for every client of the gateway, and a gateway that talks only to nodes it can trust (in process:
real nodes' web faces and MQTT bridges over the real Service and model worker with the echo backend, real Mosquitto,
the real gateway, real websockets clients).

- many clients, one link: each node sees exactly one connection (its /fleet link), whatever the number of clients;
  clients that use the same query and watch ids get their own answers and hits (ids are mapped per link);
- each client's proactive switch holds; the link's own switch is on while any client wants proactive answers;
- a link that goes down fails only what was in flight on it, with `camera_unavailable`; the other node's answers go on;
- a listener announced on the broker for a real camera gets no connection and no credential;
- a node's signed announcement recorded from the broker and replayed after the node stopped is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from livesight.fleet import topics
from livesight.gateway.directory import Trust
from tests.fleet.inproc import Gateway, Node, echoed, gateway, hello, linked, of_type, start_node
from tests.helpers import eventually, http_get, recv_until
from tests.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

CLIENTS = 12
FLEET_TOKEN = "fleet-credential-0123456789"


async def test_many_clients_share_one_link_per_node(fleet: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(gw.url)) for _ in range(CLIENTS)]
        for ws in clients:
            await hello(ws)
        for i, ws in enumerate(clients):  # every client uses the same query ids: mapped per link
            for cam in ("cam1", "cam3"):
                await ws.send(json.dumps({"type": "query", "id": f"q-{cam}", "text": f"c{i} asks", "camera": cam}))
        for i, ws in enumerate(clients):
            dones: dict[str, dict[str, Any]] = {}
            while len(dones) < 2:
                done, _ = await recv_until(ws, of_type("response.done"), within=30)
                dones[done["query_id"]] = done
            for cam in ("cam1", "cam3"):
                done = dones[f"q-{cam}"]
                assert done["status"] == "completed" and done["text"] == echoed(f"c{i} asks"), (i, cam, done)
        for name, node in nodes.items():
            assert len(node.server.links.sessions) == 1, name  # the gateway's one link
            assert len(node.server.sessions) == 0, name  # and no other connection
            asked = [q for _, q in node.pipe.backend.asked]
            assert sorted(asked) == sorted(f"c{i} asks" for i in range(CLIENTS)), name
        assert all(link.connects == 1 and link.open_connections == 1 for link in gw.server.hub.links.values())
        _, _, body = await http_get(gw.port, "/metrics")
        text = body.decode()
        for n in ("a", "b"):
            assert f'livesight_gateway_upstream_connections{{node="{n}"}} 1.0' in text
            assert f'livesight_gateway_upstream_connects_total{{node="{n}"}} 1.0' in text


async def test_watches_are_per_client_under_their_own_ids(fleet: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet
    service = nodes["b"].pipe.service
    async with connect(gw.url) as one, connect(gw.url) as two:
        for ws, text in ((one, "a red car"), (two, "a dog")):
            await hello(ws)
            await ws.send(json.dumps({"type": "watch.add", "id": "w1", "text": text, "camera": "cam3"}))
            await recv_until(ws, of_type("watch.added", id="w1"))
        await eventually(lambda: len(service.watches) == 2, 5, "two watches on node b")
        by_text = {w.text: wid for wid, w in service.watches.items()}
        nodes["b"].pipe.watch_hit(by_text["a dog"], "yes, a dog")
        hit, _ = await recv_until(two, of_type("response.done", kind="watch"))
        assert hit["watch_id"] == "w1" and hit["text"] == "yes, a dog"
        nodes["b"].pipe.scene("cam3", 3)  # a marker after the hit: client one sees it, and no hit before it
        _, before = await recv_until(one, of_type("scene.change", camera="cam3"))
        assert not [e for e in before if e["type"].startswith("response.")], before
        await two.close()  # the session's watches go with it
        await eventually(lambda: [w.text for w in service.watches.values()] == ["a red car"], 5, "watch removed")
        await one.send(json.dumps({"type": "watch.remove", "id": "w1"}))
        await recv_until(one, of_type("watch.removed", id="w1"))
        await eventually(lambda: not service.watches, 5, "no watches left on node b")


async def test_each_clients_proactive_switch_holds(fleet: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet
    pipe = nodes["a"].pipe

    def link_proactive() -> bool:
        (session,) = nodes["a"].server.links.sessions.values()
        return session.core.proactive  # type: ignore[attr-defined, no-any-return]

    async with connect(gw.url) as on, connect(gw.url) as off:
        await hello(on)
        await hello(off)
        await off.send(json.dumps({"type": "session.update", "proactive": False}))
        await recv_until(off, of_type("session.updated"))
        pipe.proactive("something moved", camera="cam1")
        msg, _ = await recv_until(on, of_type("response.done", kind="proactive"))
        assert msg["text"] == "something moved"
        pipe.scene("cam1", 5)
        _, before = await recv_until(off, of_type("scene.change", camera="cam1"))
        assert not [e for e in before if e["type"].startswith("response.")], before
        assert link_proactive()  # one client still wants them
        await on.send(json.dumps({"type": "session.update", "proactive": False}))
        await recv_until(on, of_type("session.updated"))
        await eventually(lambda: not link_proactive(), 5, "the link's proactive switch off (nobody wants them)")
        await off.send(json.dumps({"type": "session.update", "proactive": True}))
        await recv_until(off, of_type("session.updated"))
        await eventually(link_proactive, 5, "the link's proactive switch on again")
        pipe.proactive("and again", camera="cam1")
        msg, _ = await recv_until(off, of_type("response.done", kind="proactive"))
        assert msg["text"] == "and again"


async def test_a_dead_link_fails_only_its_own_requests(fleet: tuple[dict[str, Node], Gateway]) -> None:
    nodes, gw = fleet
    gate_a = nodes["a"].pipe.hold()
    nodes["b"].pipe.hold()
    async with connect(gw.url) as ws, connect(gw.url) as other:
        await hello(ws)
        await hello(other)
        await ws.send(json.dumps({"type": "query", "id": "on-b", "text": "long", "camera": "cam3"}))
        await other.send(json.dumps({"type": "query", "id": "on-a", "text": "long too", "camera": "cam1"}))
        await recv_until(ws, of_type("response.created", query_id="on-b"))
        await recv_until(other, of_type("response.created", query_id="on-a"))
        await nodes["b"].stop()
        done, _ = await recv_until(ws, of_type("response.done", query_id="on-b"))
        assert done["status"] == "failed" and done["code"] == "camera_unavailable" and "node b" in done["error"]
        gate_a.set()  # node a's answer, in flight on the other link all along, completes
        done_a, _ = await recv_until(other, of_type("response.done", query_id="on-a"))
        assert done_a["status"] == "completed" and done_a["text"] == echoed("long too")
        assert gw.server.hub.links["a"].connects == 1


# ---- trust ----------------------------------------------------------------------------------------------------


class Listener:
    """A WebSocket server an attacker announced on the broker: it records every connection and its headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.port = 0

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Listener]:
        def record(conn: ServerConnection, request: Any) -> None:
            self.seen.append(dict(request.headers.raw_items()))

        async def handler(conn: ServerConnection) -> None:
            await conn.close()

        async with serve(handler, "127.0.0.1", 0, process_request=record) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self


async def announce_rogue(broker: Mosquitto, prefix: str, url: str) -> None:
    """What anyone who may publish on the broker can do: claim camera cam1 lives at `url` (as node a, and as a new
    node), signed with a key that is not the fleet's, and unsigned."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        for node, key in (("a", None), ("a", "not-the-fleet-credential"), ("evil", None)):
            info = topics.CameraInfo("cam1", node, url, "tiny-random", "live", "", time.time() + 60)
            payload = json.dumps(topics.encode_camera_info(info, key=key)).encode()
            await c.publish(topics.camera_info_topic(prefix, "cam1"), payload, qos=1, retain=True)
        await c.publish(topics.node_available_topic(prefix, "evil"), topics.ONLINE, qos=1, retain=True)


async def test_an_announced_listener_never_gets_the_credential(broker: Mosquitto, prefix: str) -> None:
    nodes = {n: await start_node(n, broker, prefix, fleet_token=FLEET_TOKEN) for n in ("a", "b")}
    try:
        async with Listener().serving() as rogue, gateway(broker, prefix, fleet_token=FLEET_TOKEN) as gw:
            await linked(gw, "a", "b")
            assert gw.directory.url_source("a") == "announced"  # node a's own, signed announcement
            await announce_rogue(broker, prefix, f"ws://127.0.0.1:{rogue.port}")
            await eventually(lambda: gw.directory.untrusted >= 4, 5, "the rogue announcements read (and refused)")
            await asyncio.sleep(1.0)  # a link that followed them would have connected by now
            assert rogue.seen == [], rogue.seen
            assert gw.directory.url("a") == f"ws://127.0.0.1:{nodes['a'].server.port}"
            assert gw.directory.owner("cam1") == "a" and "evil" not in gw.server.hub.links
            async with connect(gw.url) as ws:
                await hello(ws)
                await ws.send(json.dumps({"type": "query", "id": "q1", "text": "still mine?", "camera": "cam1"}))
                done, _ = await recv_until(ws, of_type("response.done", query_id="q1"))
                assert done["status"] == "completed" and done["text"] == echoed("still mine?")
            assert gw.server.hub.links["a"].connects == 1
    finally:
        for n in nodes.values():
            await n.stop()


async def test_a_configured_address_wins_over_any_announcement(broker: Mosquitto, prefix: str) -> None:
    """No credential at all (a loopback fleet), node addresses in the config: a loopback listener announced for a real
    camera is never used either."""
    nodes = {n: await start_node(n, broker, prefix) for n in ("a", "b")}
    try:
        urls = {n: f"ws://127.0.0.1:{node.server.port}" for n, node in nodes.items()}
        async with Listener().serving() as rogue, gateway(broker, prefix) as gw:
            gw.directory.trust = Trust(urls=urls)  # as fleet.nodes: [{id: a, url: …}, …] gives them
            await announce_rogue(broker, prefix, f"ws://127.0.0.1:{rogue.port}")
            rogue_url = f"ws://127.0.0.1:{rogue.port}"
            await eventually(lambda: gw.directory.infos["cam1"].url == rogue_url, 5, "the rogue announcements read")
            assert gw.directory.untrusted == 2  # node evil: not one of fleet.nodes (its info and its availability)
            await asyncio.sleep(1.0)  # a link that followed them would have connected by now
            assert rogue.seen == [], rogue.seen
            assert gw.directory.url("a") == urls["a"] and "evil" not in gw.server.hub.links
    finally:
        for n in nodes.values():
            await n.stop()


async def _recorded(broker: Mosquitto, topic: str) -> bytes:
    """What anyone who may subscribe can record: the retained message on `topic`."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError(f"nothing retained on {topic}")


async def _publish(broker: Mosquitto, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.publish(topic, payload, qos=1, retain=True)


async def test_a_recorded_announcement_replayed_after_the_node_stopped_is_refused(
    broker: Mosquitto, prefix: str
) -> None:
    """Node a's signed announcement of cam1, recorded from the broker while it ran, replayed after it stopped: at once
    (its counter was passed by the node's own `unavailable`) it is refused as replayed, later as stale; the directory
    keeps what the node last said, and counts the refusals by reason (/healthz, /metrics). The node restarting (a new
    run, its counter from 1) is believed again."""
    node = await start_node("a", broker, prefix, fleet_token=FLEET_TOKEN)
    topic = topics.camera_info_topic(prefix, "cam1")
    try:
        recorded = await _recorded(broker, topic)
        copy = topics.decode_camera_info(recorded)
        assert copy is not None and copy.state == "live" and copy.sig is not None  # signed, dated: a valid copy
        async with gateway(broker, prefix, fleet_token=FLEET_TOKEN) as gw:
            d = gw.directory
            await linked(gw, "a")
            await node.stop()  # a clean stop: cam1 `unavailable`, node a offline
            await eventually(lambda: d.infos["cam1"].state == "unavailable", 10, "the node's last word")
            await _publish(broker, topic, recorded)
            refused = lambda: getattr(d, "refused", {})  # noqa: E731
            await eventually(lambda: refused() or d.infos["cam1"].state != "unavailable", 5, "the replay read")
            assert d.infos["cam1"].state == "unavailable" and refused() == {"replayed": 1}
            await _publish(broker, topic, b"")  # cleared (as by anyone): the directory forgets the camera's info…
            await eventually(lambda: "cam1" not in d.infos, 5, "cam1's info cleared")
            await _publish(broker, topic, recorded)  # …but not which counts it has taken
            await eventually(lambda: refused()["replayed"] == 2, 5, "the second replay read")
            d.clock = lambda: time.time() + 120 + topics.CLOCK_SKEW_S + 5  # past the default max age (2 x 60 s)
            stale = topics.CameraInfo("cam1", "a", copy.url, copy.model, "live", "", copy.wall_time, issued=copy.issued)
            await _publish(broker, topic, json.dumps(topics.encode_camera_info(stale, key=FLEET_TOKEN)).encode())
            await eventually(lambda: refused()["stale"] == 1, 5, "a stale copy read")
            assert "cam1" not in d.infos and d.owner("cam1") == "a"  # the config's owner, unavailable
            _, _, body = await http_get(gw.port, "/healthz")
            assert json.loads(body)["mqtt"]["refused"] == {"replayed": 2, "stale": 1}
            line = b'livesight_gateway_directory_refused_total{reason="stale"} 1.0'
            async with asyncio.timeout(5):
                while line not in (await http_get(gw.port, "/metrics"))[2]:  # noqa: ASYNC110 - rendered once a second
                    await asyncio.sleep(0.2)
            d.clock = time.time
            node = await start_node("a", broker, prefix, fleet_token=FLEET_TOKEN)  # a restart: a new run
            await linked(gw, "a")
            await eventually(lambda: "cam1" in d.infos and d.infos["cam1"].state == "live", 10, "the new run")
            assert d.infos["cam1"].boot != copy.boot and refused() == {"replayed": 2, "stale": 1}
    finally:
        await node.stop()
