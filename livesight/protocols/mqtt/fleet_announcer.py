"""A node's part of the fleet directory, published through the MQTT bridge (topics: livesight/fleet/topics.py).

    fleet = FleetAnnouncer(prefix, node="a", url="ws://10.0.0.5:8765", cameras=["door", "yard"], key=node_token)
    MQTTBridge(service, cfg.mqtt, fleet=fleet)

With it the bridge (1) uses `P/nodes/NODE/available` as its availability topic and last will instead of the shared
`P/available`, (2) subscribes only to its own cameras' `P/CAM/query`, and (3) keeps a retained `P/CAM/info` per
camera (owner, URL, model, state) up to date: on every connect, on every camera state change, and every `interval_s`
(`fleet.announce_interval_s`: a gateway takes no announcement older than twice that). With `key` (the fleet's
credential, `fleet.node_token`) each info is signed, so a gateway can tell it from one anyone could publish; every info
carries the time it was issued, this run's name (`boot`, random) and counter (`seq`), signed with the rest, so a
recorded copy replayed later is refused (livesight/fleet/topics.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Protocol

from livesight.fleet import topics
from livesight.protocols.contract import events as ev
from livesight.types import CameraStatus

log = logging.getLogger(__name__)


class _Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> Any: ...


class FleetAnnouncer:
    def __init__(
        self,
        prefix: str,
        *,
        node: str,
        url: str,
        cameras: list[str],
        key: str | None = None,
        interval_s: float = 60.0,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self._key = key
        self.node = node
        self.url = url
        self.cameras = list(cameras)
        self.interval_s = interval_s
        self.model = ""
        self.random_weights = False
        self.published = 0
        self.reasserted = 0  # late last wills answered with "online"
        self.boot = secrets.token_hex(8)  # this run's name: a restart is told from a replay of the last run
        self._seq = 0  # announcements of this run (every camera's, one counter)
        self._last: dict[str, tuple[str, str, float]] = {}  # camera → (state, reason, wall_time) last announced

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

    async def keep_fresh(self, client: _Publisher) -> None:
        """Every interval_s, every camera's last info again with a new issue time (runs while connected)."""
        while True:
            await asyncio.sleep(self.interval_s)
            for cam in self.cameras:
                state, reason, wall_time = self._last.get(cam, ("connecting", "", time.time()))
                await self._publish(client, cam, state, reason, wall_time)

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
        self._seq += 1
        self._last[camera] = (state, reason, wall_time)
        info = topics.CameraInfo(
            camera,
            self.node,
            self.url,
            self.model,
            state,
            reason[:500],
            wall_time,
            self.random_weights,
            issued=time.time(),
            boot=self.boot,
            seq=self._seq,
        )
        payload = ev.dumps(topics.encode_camera_info(info, key=self._key)).encode()
        await client.publish(topics.camera_info_topic(self.prefix, camera), payload, qos=1, retain=True)
        self.published += 1
