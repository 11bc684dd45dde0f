"""A node's part of the fleet directory, published through the MQTT bridge (topics: livesight/fleet/topics.py).

    fleet = FleetAnnouncer(prefix, node="a", url="ws://10.0.0.5:8765", cameras=["door", "yard"], key=node_token)
    MQTTBridge(service, cfg.mqtt, fleet=fleet)

With it the bridge (1) uses `P/nodes/NODE/available` as its availability topic and last will instead of the shared
`P/available`, (2) subscribes only to its own cameras' `P/CAM/query`, and (3) keeps a retained `P/CAM/info` per
camera (owner, URL, model, state) up to date: on every connect and on every camera state change. With `key` (the
fleet's credential, `fleet.node_token`) each info is signed, so a gateway can tell it from one anyone could publish.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from livesight.fleet import topics
from livesight.protocols.contract import events as ev
from livesight.types import CameraStatus

log = logging.getLogger(__name__)


class _Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> Any: ...


class FleetAnnouncer:
    def __init__(self, prefix: str, *, node: str, url: str, cameras: list[str], key: str | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self._key = key
        self.node = node
        self.url = url
        self.cameras = list(cameras)
        self.model = ""
        self.random_weights = False
        self.published = 0
        self.reasserted = 0  # late last wills answered with "online"

    @property
    def availability_topic(self) -> str:
        return topics.node_available_topic(self.prefix, self.node)

    def query_topics(self) -> list[str]:
        return [topics.camera_query_topic(self.prefix, c) for c in self.cameras]

    async def announce(self, client: _Publisher, health: dict[str, Any]) -> None:
        """Publish every camera's info (after each connect: retained messages may have been lost with the broker)."""
        model = health.get("model") or {}
        self.model = str(model.get("name") or "")
        self.random_weights = model.get("random_weights") is True
        states = health.get("cameras") or {}
        now = time.time()
        for cam in self.cameras:
            st = states.get(cam) or {}
            await self._publish(client, cam, str(st.get("state") or "connecting"), str(st.get("reason") or ""), now)

    async def on_own_availability(self, client: _Publisher, payload: object) -> None:
        if payload == topics.OFFLINE:
            self.reasserted += 1
            log.info("MQTT: %s read 'offline' (a late last will): saying online again", self.availability_topic)
            await client.publish(self.availability_topic, topics.ONLINE, qos=1, retain=True)

    async def on_state(self, client: _Publisher, status: CameraStatus) -> None:
        if status.camera in self.cameras:
            await self._publish(client, status.camera, status.state.value, status.reason, status.wall_time)

    async def announce_state(self, client: _Publisher, camera: str, state: str, reason: str) -> None:
        """One camera's info with a state of our own (a clean stop says `unavailable`)."""
        if camera in self.cameras:
            await self._publish(client, camera, state, reason, time.time())

    async def _publish(self, client: _Publisher, camera: str, state: str, reason: str, wall_time: float) -> None:
        info = topics.CameraInfo(
            camera, self.node, self.url, self.model, state, reason[:500], wall_time, self.random_weights
        )
        payload = ev.dumps(topics.encode_camera_info(info, key=self._key)).encode()
        await client.publish(topics.camera_info_topic(self.prefix, camera), payload, qos=1, retain=True)
        self.published += 1
