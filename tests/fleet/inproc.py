"""The fleet in process, for the gateway's tests: nodes = the daemon's real web face (with the gateway's /fleet link)
and MQTT bridge over the real Service and model worker with the echo backend (tests/pipeline.py); the gateway = its
real directory watcher and server; a real Mosquitto (the `broker` fixture). The `fleet` fixture (conftest.py) starts
nodes a and b and a gateway linked to both."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection

from livesight.config import MQTTConfig, ReconnectConfig, ServerConfig, TimelineConfig
from livesight.daemon.images import Images, ThumbnailStore
from livesight.daemon.timeline.face import TimelineFace
from livesight.gateway.directory import Directory, Trust
from livesight.gateway.mqtt_watch import DirectoryWatcher
from livesight.gateway.server import GatewayServer
from livesight.memory.event_log import EventLog
from livesight.protocols.mqtt.bridge import MQTTBridge
from livesight.protocols.mqtt.fleet_announcer import FleetAnnouncer
from livesight.protocols.web.fleet_link import FleetLink
from livesight.protocols.web.server import WebServer
from livesight.protocols.web.ws_session import ClientLimits
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.timeline.summary import Summaries
from livesight.types import SceneChange
from tests.helpers import eventually, recv_until
from tests.mosquitto import Mosquitto
from tests.pipeline import Pipeline, pipeline

FAST = ReconnectConfig(initial_s=0.1, max_s=0.5, multiplier=2.0, jitter=0.2)
OWNERS = {"cam1": "a", "cam2": "a", "cam3": "b"}


@dataclass
class Node:
    name: str
    pipe: Pipeline
    server: WebServer
    task: asyncio.Task[None]
    bridge: MQTTBridge
    images: Images
    event_log: EventLog | None = None
    timeline: TimelineStore | None = None

    async def stop(self) -> None:
        """A clean stop: the bridge says offline, the server closes its clients, the model worker stops."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        try:
            await self.server.close()
        finally:
            await self.pipe.stop()
            await self.images.close()
            if self.timeline is not None:
                self.timeline.close()
            if self.event_log is not None:
                self.event_log.close()

    async def scene(self, camera: str, scene: int, pts: float) -> SceneChange:
        """A scene that starts with a frame fed now at `pts`: its thumbnail saved, logged, broadcast (as a cut is)."""
        assert self.event_log is not None, "start_node(..., pictures=DIR) for scenes"
        self.pipe.service.frames.expect_first_scene(camera, scene)
        await feed_one(self, camera, np.full((56, 56, 3), 90 + scene, np.uint8), pts)
        change = SceneChange(camera, scene, pts, time.time(), 4.0)
        self.event_log.scene(change)
        self.event_log.flush()
        self.pipe.publish(change)
        return change


async def start_node(
    name: str,
    broker: Mosquitto,
    prefix: str,
    token: str | None = None,
    fleet_token: str | None = None,
    pictures: Path | None = None,
    timeline: bool = False,
) -> Node:
    """A node: the daemon's web face (with the gateway's link, /fleet, and its pictures) and MQTT bridge (announcing
    its cameras, signed with the fleet's credential when given) over the real Service and model worker, echo backend.
    With `pictures` (a directory) it keeps an event log and scene thumbnails there; with `timeline` too, a timeline
    store beside them, served (/api/scenes, keyframes) and summarised (service.summaries)."""
    cams = [c for c, n in OWNERS.items() if n == name]
    pipe = pipeline(cams).start()
    log = EventLog(pictures / f"{name}.sqlite") if pictures is not None else None
    store = ThumbnailStore(pictures / f"{name}.thumbnails", 100) if pictures is not None else None
    images = Images(cams, pipe.service.frames, store=store, event_log=log)
    await images.start()
    tl = None
    if timeline and log is not None and pictures is not None:
        tl = TimelineStore(log, keyframe_dir(str(pictures / f"{name}.sqlite")), TimelineConfig())
        tl.open()
        pipe.service.summaries = Summaries(tl.between, zone=UTC)
    server = WebServer(
        pipe.service,
        ServerConfig(host="127.0.0.1", port=0, auth_token=token),
        images=images,
        fleet_link=FleetLink(fleet_token),
        summaries=pipe.service,  # 400 "keeps no timeline" without service.summaries
        timeline=TimelineFace(tl, cams, store) if tl is not None else None,
    )
    try:
        port = await server.start()
    except BaseException:
        await pipe.stop()
        await images.close()
        raise
    mqtt = MQTTConfig(enabled=True, port=broker.port, prefix=prefix, reconnect=FAST)  # keepalive: the default 10 s
    fleet = FleetAnnouncer(prefix, node=name, url=f"ws://127.0.0.1:{port}", cameras=cams, key=fleet_token)
    bridge = MQTTBridge(pipe.service, mqtt, fleet=fleet)
    task = asyncio.create_task(bridge.run(), name=f"bridge-{name}")
    async with asyncio.timeout(10):
        await bridge.connected.wait()
    return Node(name, pipe, server, task, bridge, images, log, tl)


@dataclass
class Gateway:
    directory: Directory
    server: GatewayServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def gateway(
    broker: Mosquitto,
    prefix: str,
    token: str | None = None,
    fleet_token: str | None = None,
    limits: ClientLimits | None = None,
    **server_cfg: Any,
) -> AsyncIterator[Gateway]:
    directory = Directory(OWNERS, nodes=["a", "b"], trust=Trust(key=fleet_token))
    watcher = DirectoryWatcher(directory, MQTTConfig(enabled=True, port=broker.port, prefix=prefix, reconnect=FAST))
    server = GatewayServer(
        directory,
        ServerConfig(host="127.0.0.1", port=0, auth_token=token, **server_cfg),
        prefix=prefix,
        node_token=fleet_token,
        limits=limits,
    )
    port = await server.start()
    task = asyncio.create_task(watcher.run(), name="directory")
    try:
        await eventually(lambda: directory.synced, 10, "directory synced")
        yield Gateway(directory, server, port)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()


async def linked(gw: Gateway, *nodes: str) -> None:
    """Until the directory has the nodes online and the gateway's link to each is up."""
    await eventually(lambda: all(gw.directory.online(n) for n in nodes), 10, "nodes online")
    await eventually(lambda: all(gw.server.hub.links[n].connected for n in nodes), 10, "links up")


def echoed(question: str) -> str:
    """The echo model's answer to a question, from a camera that has seen no frame yet."""
    return f"I hold 0 frames (0 visual tokens). You asked: {question}"


async def feed(node: Node, camera: str, frames: int) -> None:
    """Sampled frames through the node's model worker (DTD, memory): 4 tokens each (56×56, 28 px tokens)."""
    for i in range(frames):
        await feed_one(node, camera, np.full((56, 56, 3), 40 + 60 * i, np.uint8), float(i))


async def feed_one(node: Node, camera: str, rgb: np.ndarray, pts: float) -> None:
    counters = node.pipe.service.counters[camera]
    want = counters.tokens_total + 4
    node.pipe.frame(camera, rgb, pts)
    await eventually(lambda: counters.tokens_total == want, 5, f"{camera} frame at {pts} s encoded")


def of_type(typ: str, **fields: Any) -> Any:
    return lambda e: e["type"] == typ and all(e.get(k) == v for k, v in fields.items())


async def hello(ws: ClientConnection) -> dict[str, Any]:
    e, _ = await recv_until(ws, of_type("session.created"))
    return e
