"""Home Assistant MQTT discovery, kept true while the bridge is connected (`mqtt.discovery: true`).

Run by the MQTT bridge as one more task of its connection (`mqtt:ha`):
- publishes the retained discovery configs (ha_discovery.py) and the watch states, and re-checks them every
  `sync_interval_s` (watches come and go with their clients): a new watch gets its binary_sensor, a removed one an
  empty retained config (HA deletes the entity) and an empty state;
- reads `<discovery prefix>/status`: `online` (HA's birth message, HA restarted) → everything is published again;
- reads its own retained configs back: one this daemon no longer wants (a camera removed from the config, a watch of
  an earlier run) is cleared;
- on a scene change, publishes the scene's first frame (JPEG bytes, retained) for the `image` entity;
- keeps the `sensor`'s topic at the last proactive message or answer to a question asked over MQTT (the `text`
  entity's command topic is the bridge's query topic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import aiomqtt

from livesight.protocols.contract.api import ImageSource, ServiceAPI, ServiceError
from livesight.protocols.mqtt import ha_discovery as ha
from livesight.types import ResponseCreated, ResponseDone, ResponseKind, ResponseStatus, SceneChange

log = logging.getLogger(__name__)

SUBSCRIPTION_SIZE = 64
MAX_STALE = 1024  # leftover config topics remembered for clearing


@dataclass
class HACounters:
    configs_published: int = 0
    configs_cleared: int = 0
    republished: int = 0  # HA birth messages answered
    images_published: int = 0
    images_skipped: int = 0  # no picture yet, or too many being encoded
    events_dropped: int = 0


class HAPublisher:
    def __init__(
        self,
        service: ServiceAPI,
        naming: ha.Naming,
        *,
        images: ImageSource | None = None,
        sync_interval_s: float = 1.0,
    ) -> None:
        self.service = service
        self.naming = naming
        self.images = images
        self.sync_interval_s = sync_interval_s
        self.counters = HACounters()
        self._published: dict[str, bytes] = {}  # retained topics we set → payload
        self._stale: set[str] = set()  # our config topics seen on the broker that we do not want
        self._wake = asyncio.Event()
        self.synced = asyncio.Event()  # set after each completed sync (tests wait on it)

    @property
    def subscriptions(self) -> list[str]:
        return [self.naming.status_topic, self.naming.config_filter]

    # ---- incoming (called by the bridge's receive loop) ---------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> bool:
        """True when the message was ours to handle (HA status or one of our config topics)."""
        if topic == self.naming.status_topic:
            if payload.strip() == b"online":
                log.info("Home Assistant came online: publishing discovery again")
                self.counters.republished += 1
                self._published.clear()
                self._wake.set()
            return True
        if self.naming.is_own_config(topic):
            if payload and topic not in self._published and len(self._stale) < MAX_STALE:
                self._stale.add(topic)  # checked against what we want at the next sync
                self._wake.set()
            return True
        return False

    # ---- the task ------------------------------------------------------------------------------------------

    async def run(self, client: aiomqtt.Client) -> None:
        self._published.clear()  # a new connection: publish everything again
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sync_loop(client), name="mqtt:ha:sync")
            tg.create_task(self._events(client), name="mqtt:ha:events")

    async def _sync_loop(self, client: aiomqtt.Client) -> None:
        while True:
            _raise_if_cancelled()
            self._wake.clear()
            await self.sync(client)
            self.synced.set()
            # (not asyncio.timeout: on 3.11 a cancel landing as it expires is swallowed, and stop would hang)
            tick = asyncio.get_running_loop().call_later(self.sync_interval_s, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                tick.cancel()

    def desired(self) -> dict[str, bytes]:
        """Every retained topic this daemon wants set now: configs of cameras and watches, watch states."""
        n = self.naming
        want: dict[str, bytes] = {}
        for cam in self.service.camera_ids():
            for topic, payload in ha.camera_configs(n, cam).items():
                want[topic] = ha.encode(payload)
        for w in self.service.watch_list():
            topic, payload = ha.watch_config(n, w.camera, w.watch_id, w.text)
            want[topic] = ha.encode(payload)
            want[n.watch_state_topic(w.camera, w.watch_id)] = b"ON" if w.holds else b"OFF"
        return want

    async def sync(self, client: aiomqtt.Client) -> None:
        want = self.desired()
        stale, self._stale = self._stale, set()
        for topic in stale - set(want):
            await client.publish(topic, b"", qos=1, retain=True)
            self.counters.configs_cleared += 1
        for topic, payload in want.items():
            if self._published.get(topic) != payload:
                await client.publish(topic, payload, qos=1, retain=True)
                self._published[topic] = payload
                self.counters.configs_published += topic.endswith("/config")
        for topic in [t for t in self._published if t not in want]:
            await client.publish(topic, b"", qos=1, retain=True)
            del self._published[topic]
            self.counters.configs_cleared += topic.endswith("/config")

    async def _events(self, client: aiomqtt.Client) -> None:
        while True:
            sub = self.service.subscribe(maxsize=SUBSCRIPTION_SIZE)
            pending: OrderedDict[str, ResponseCreated] = OrderedDict()
            try:
                async for item in sub:
                    _raise_if_cancelled()
                    if isinstance(item, SceneChange):
                        await self._image(client, item)
                    elif isinstance(item, ResponseCreated) and item.kind is ResponseKind.PROACTIVE:
                        pending[item.response_id] = item
                        while len(pending) > 16:
                            pending.popitem(last=False)
                    elif isinstance(item, ResponseDone) and item.response_id in pending:
                        created = pending.pop(item.response_id)
                        if item.status is ResponseStatus.COMPLETED:
                            await self.message(client, created.camera, item.text, kind="proactive", question=None)
            finally:
                sub.close()
            if not sub.overflowed:
                return
            self.counters.events_dropped += 1

    async def _image(self, client: aiomqtt.Client, change: SceneChange) -> None:
        if self.images is None:
            return
        data: bytes | None = None
        try:
            data = await self.images.scene_jpeg(change.camera, change.scene)
            if data is None:
                latest = await self.images.latest_jpeg(change.camera, overlay=False)
                data = latest.data if latest is not None else None
        except (ServiceError, OSError, ValueError) as e:  # no picture this time; the bridge goes on
            log.warning("no picture of %s scene %d for Home Assistant: %s", change.camera, change.scene, e)
        if data is None:
            self.counters.images_skipped += 1
            return
        await client.publish(self.naming.image_topic(change.camera), data, qos=1, retain=True)
        self.counters.images_published += 1

    async def message(self, client: aiomqtt.Client, camera: str, text: str, *, kind: str, question: str | None) -> None:
        """The sensor's new state: the last answer or proactive message of the camera (retained)."""
        payload = ha.text_payload(text=text, kind=kind, camera=camera, question=question, wall_time=time.time())
        await client.publish(self.naming.text_topic(camera), payload, qos=1, retain=True)


def _raise_if_cancelled() -> None:
    """Python 3.11's `asyncio.wait_for` (inside aiomqtt's publish) can swallow a cancel that lands as the broker's
    acknowledgement arrives; the task is still marked as cancelling: honour it, or the bridge could never stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
