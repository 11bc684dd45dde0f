"""Simulated nodes for the gateway benchmark: many nodes in one process, each speaking the node protocol.

    python -m livesight.bench.fleet.fake_nodes SPEC.json

SPEC: {"mqtt_port", "prefix", "token", "stats_interval_s", "scene_every_s", "status_file", "ports_file",
       "nodes": {NODE: {"cameras": [CAM, …]}}}

Each node listens on a port of its own (loopback, any free one: written to `ports_file` as {NODE: port} before the
nodes announce themselves and say "fake nodes ready") with two WebSocket endpoints: `/fleet` (the gateway's link:
the fleet's credential required, link limits announced, as protocols/web/fleet_link.py) and `/` (a direct client, for
the TTFT comparison). A node serves HTTP on the real nodes' own stack: uvicorn with our protocol subclasses
(protocols/web/transport.py, the link's limits), Starlette, and the real door of `/fleet` (protocols/web/fleet_link.py's
FleetLinkGate: the credential, the Origin and Host checks, the 401 a gateway without the credential meets), so what the
gateway meets at the HTTP and WebSocket level is what a daemon answers; only the session behind the door is simulated.
Per connection it sends what a daemon sends (the same codec: livesight/protocols/contract/events.py): `session.created`
with its cameras, a `stats` event every `stats_interval_s` with each camera's numbers in the daemon's shape, scene
changes (each camera cuts every `scene_every_s` on average), and answers every `query` at once: `response.created`, four
`response.delta`s, `response.done`. Watches and `session.update` are acknowledged. One MQTT client announces every
node (`P/nodes/NODE/available` online) and camera (`P/CAM/info`, signed with the fleet's credential), retained.

What the gateway does to the nodes is counted per node — link connections open now, the most open at once, accepted
in all, queries answered — and written as JSON to `status_file` at SIGTERM (and every second while it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from livesight.bench.fleet.procs import write_json
from livesight.config import ServerConfig
from livesight.fleet import topics
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import StatsSnapshot
from livesight.protocols.web.fleet_link import LINK_LIMITS, FleetLink, FleetLinkGate
from livesight.protocols.web.transport import Transport
from livesight.protocols.web.ws_endpoint import WSConn
from livesight.types import (
    CameraCounters,
    CameraSnapshot,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)

WORDS = ("the", "door", "is", "closed")
MAX_MESSAGE_BYTES = 2**20  # what a node takes from one client message
_ids = itertools.count(1)


@dataclass
class NodeCounts:
    links_open: int = 0
    links_max: int = 0  # the most /fleet connections open at once
    links_accepted: int = 0
    direct_accepted: int = 0
    queries: int = 0


@dataclass
class FakeNode:
    name: str
    port: int
    cameras: list[str]
    token: str | None
    stats_interval_s: float
    scene_every_s: float
    counts: NodeCounts = field(default_factory=NodeCounts)
    conns: set[WSConn] = field(default_factory=set)
    scenes: dict[str, int] = field(default_factory=dict)

    def app(self) -> ASGIApp:
        """The node's port, as a daemon's: `/fleet` behind the real door (FleetLinkGate), `/` for a direct client."""
        direct = Starlette(routes=[WebSocketRoute("/", _Endpoint(self, link=False))])
        return FleetLinkGate(direct, link=FleetLink(self.token), ws=_Endpoint(self, link=True), pictures=None)

    async def handle(self, conn: WSConn, *, link: bool) -> None:
        c = self.counts
        if link:
            c.links_open += 1
            c.links_accepted += 1
            c.links_max = max(c.links_max, c.links_open)
        else:
            c.direct_accepted += 1
        self.conns.add(conn)
        try:
            cams = [{"id": cam, "state": "live", "reason": ""} for cam in self.cameras]
            limits = {"rate_per_s": LINK_LIMITS.rate_per_s, "burst": LINK_LIMITS.burst, "max_concurrent_queries": 1024}
            hello = ev.encode_session_created(
                session_id=f"sess_{self.name}_{next(_ids)}",
                cameras=cams,
                camera=self.cameras[0],
                proactive=True,
                limits=limits,
            )
            await conn.send(ev.dumps(hello))
            async for raw in conn.messages():  # until the gateway (or a direct client) goes away: the node goes on
                msg = json.loads(raw)
                typ = msg.get("type")
                if typ == "query":
                    await self._answer(conn, msg)
                elif typ in ("watch.add", "watch.remove"):
                    kind = "watch.added" if typ == "watch.add" else "watch.removed"
                    await conn.send(ev.dumps({"type": kind, "id": msg.get("id")}))
                elif typ == "session.update":
                    session = {"id": "s", "camera": self.cameras[0], "proactive": bool(msg.get("proactive", True))}
                    await conn.send(ev.dumps({"type": "session.updated", "session": session}))
        finally:
            self.conns.discard(conn)
            if link:
                c.links_open -= 1

    async def _answer(self, conn: WSConn, msg: dict[str, Any]) -> None:
        self.counts.queries += 1
        qid, camera = str(msg.get("id")), str(msg.get("camera") or self.cameras[0])
        rid = f"resp_{self.name}_{next(_ids)}"
        await conn.send(ev.dumps(ev.encode_response(ResponseCreated(rid, camera, ResponseKind.QUERY, query_id=qid))))
        for w in WORDS:
            await conn.send(ev.dumps(ev.encode_response(ResponseDelta(rid, w + " "), query_id=qid, kind="query")))
        done = ResponseDone(
            rid,
            ResponseStatus.COMPLETED,
            " ".join(WORDS) + " ",
            prompt_tokens=12,
            completion_tokens=len(WORDS),
            ttft_ms=0.1,
        )
        await conn.send(ev.dumps(ev.encode_response(done, query_id=qid, kind="query")))

    def stats_event(self) -> str:
        k = CameraCounters(
            frames_decoded=900,
            frames_sampled=120,
            frames_encoded=118,
            encoder_skipped=2,
            tokens_total=30_000,
            tokens_kept=1_700,
            reconnects=1,
        )
        memory = {
            "scene": 3,
            "memory_tokens": 1700,
            "token_budget": 8192,
            "kv_tokens": 1800,
            "kv_bytes": 172_800,
            "max_position": 2100,
            "scenes_full": 1,
            "scenes_pooled": 2,
            "scenes_captioned": 0,
            "compressions": 2,
            "rebuilds": 0,
            "rebuilding": False,
        }
        per_cam = CameraSnapshot.of("live", k, frame_ms_median=31.5, memory=memory).as_dict()
        totals = {
            "tokens_total": 30_000 * len(self.cameras),
            "tokens_kept": 1_700 * len(self.cameras),
            "clients": 1,
            "clients_dropped": 0,
            "responses_refused": 0,
            "ttft_ms_median": 40.0,
        }
        snap = StatsSnapshot(time.time(), dict.fromkeys(self.cameras, per_cam), totals)
        return ev.dumps(ev.encode_stats(snap))

    async def broadcasts(self, rng: random.Random) -> None:
        """Stats every interval, and scene changes (each camera every scene_every_s on average), to every connection."""
        next_stats = time.monotonic() + rng.uniform(0, self.stats_interval_s)
        rate = len(self.cameras) / self.scene_every_s if self.scene_every_s > 0 else 0.0
        next_scene = time.monotonic() + (rng.expovariate(rate) if rate else 1e9)
        while True:
            now = time.monotonic()
            await asyncio.sleep(max(0.0, min(next_stats, next_scene) - now))
            now = time.monotonic()
            out: list[str] = []
            if now >= next_stats:
                next_stats += self.stats_interval_s
                out.append(self.stats_event())
            if now >= next_scene:
                next_scene += rng.expovariate(rate)
                cam = rng.choice(self.cameras)
                self.scenes[cam] = self.scenes.get(cam, 1) + 1
                change = SceneChange(cam, self.scenes[cam], pts=now, wall_time=time.time(), score=5.0)
                out.append(ev.dumps(ev.encode_scene_change(change)))
            for conn in list(self.conns):
                for raw in out:
                    await conn.send(raw)  # False once the connection is gone: its handler ends on its own


class _Endpoint:
    """ASGI: one WebSocket connection to a node (`link`: the gateway's /fleet, past the door; else a direct client)."""

    def __init__(self, node: FakeNode, *, link: bool) -> None:
        self.node = node
        self.link = link

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        await self.node.handle(WSConn(ws, receive), link=self.link)


async def announce(spec: dict[str, Any], nodes: list[FakeNode]) -> None:
    prefix, key = spec["prefix"], spec.get("token")
    async with aiomqtt.Client("127.0.0.1", int(spec["mqtt_port"]), max_queued_outgoing_messages=100_000) as c:
        for node in nodes:
            url = f"ws://127.0.0.1:{node.port}"
            for cam in node.cameras:
                info = topics.CameraInfo(cam, node.name, url, "fake", "live", "", time.time(), issued=time.time())
                payload = ev.dumps(topics.encode_camera_info(info, key=key)).encode()
                await c.publish(topics.camera_info_topic(prefix, cam), payload, qos=1, retain=True)
            await c.publish(topics.node_available_topic(prefix, node.name), topics.ONLINE, qos=1, retain=True)


async def main(spec: dict[str, Any]) -> None:
    status = Path(spec["status_file"])
    nodes = [
        FakeNode(
            name,
            0,
            list(n["cameras"]),
            spec.get("token"),
            float(spec["stats_interval_s"]),
            float(spec["scene_every_s"]),
        )
        for name, n in spec["nodes"].items()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    rng = random.Random(7)

    async def write_status() -> None:
        await asyncio.to_thread(write_json, status, {n.name: asdict(n.counts) for n in nodes})

    cfg = ServerConfig(host="127.0.0.1", port=0, max_message_bytes=MAX_MESSAGE_BYTES)
    transports: list[Transport] = []
    try:
        for node in nodes:
            transports.append(await Transport.start(node.app(), cfg, LINK_LIMITS, server_header="livesight-fake"))
            node.port = transports[-1].port
        ports = {n.name: n.port for n in nodes}
        await asyncio.to_thread(write_json, Path(spec["ports_file"]), ports)
        await announce(spec, nodes)
        print("fake nodes ready", flush=True)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(n.broadcasts(rng), name=f"fake:{n.name}") for n in nodes]
            while not stop.is_set():
                await write_status()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()
            for t in tasks:
                t.cancel()
    finally:
        for t in transports:
            t.stop_listening()
        await asyncio.gather(*(t.stop() for t in transports))
    await write_status()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
