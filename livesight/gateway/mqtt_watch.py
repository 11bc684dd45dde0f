"""Keep the gateway's Directory in sync with the fleet's retained MQTT topics.

Subscribes to `P/nodes/+/available` and `P/+/info` (retained: a new subscription gets the whole directory at once)
and applies every message. On broker loss the directory keeps what it knew (nodes cannot be told dead or alive
meanwhile: the WebSocket links to them decide) and the watcher reconnects with jittered, capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiomqtt

from livesight.backoff import backoff_delay
from livesight.config import MQTTConfig
from livesight.gateway.directory import MAX_CAMERAS, MAX_NODES, Directory
from livesight.protocols.mqtt.connect import BrokerConnection

log = logging.getLogger(__name__)

MAX_INCOMING = MAX_CAMERAS + MAX_NODES + 1024  # queued directory messages (a whole fleet's retained topics at once)
SYNC_S = 0.5  # after subscribing, retained messages get this long to arrive before the directory counts as synced


class DirectoryWatcher:
    def __init__(
        self, directory: Directory, cfg: MQTTConfig, *, identifier: str | None = None, rng: random.Random | None = None
    ) -> None:
        self.directory = directory
        self.cfg = cfg
        self.prefix = cfg.prefix.rstrip("/")
        self.identifier = identifier
        self.broker = BrokerConnection(cfg)  # host, port, TLS, credentials: as the daemon's bridge connects
        self.rng = rng or random.Random()
        self.connects = 0
        self.failures = 0
        self.messages = 0

    async def run(self) -> None:
        """Until cancelled (a directory is needed for as long as the gateway runs: it never gives up)."""
        attempt = 0
        while True:
            before = self.connects
            try:
                await self._session()
            except aiomqtt.MqttError as e:
                self.failures += 1
                log.warning("MQTT %s (directory): %s", self.broker.where, self.broker.describe(e))
            finally:
                self.directory.set_mqtt(False)
            attempt = 0 if self.connects > before else attempt + 1
            await asyncio.sleep(backoff_delay(self.cfg.reconnect, attempt, self.rng))

    async def _session(self) -> None:
        client = aiomqtt.Client(
            **self.broker.client_args(),
            identifier=self.identifier,
            keepalive=self.cfg.keepalive_s,
            timeout=10,
            max_queued_incoming_messages=MAX_INCOMING,
        )
        async with client:
            self.connects += 1
            await client.subscribe(f"{self.prefix}/nodes/+/available", qos=1)
            await client.subscribe(f"{self.prefix}/+/info", qos=1)
            self.directory.set_mqtt(True)
            log.info("MQTT: directory connected to %s (prefix %s)", self.broker.where, self.prefix)
            synced = asyncio.create_task(self._mark_synced(), name="directory:synced")
            try:
                async for message in client.messages:
                    self.messages += 1
                    payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                    self.directory.apply(self.prefix, str(message.topic), bytes(payload))
            finally:
                synced.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await synced

    async def _mark_synced(self) -> None:
        await asyncio.sleep(SYNC_S)
        self.directory.set_mqtt(True, synced=True)
