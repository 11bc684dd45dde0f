"""MQTT bridge (aiomqtt 2.x): pipeline events out, questions in. Payloads share the WebSocket codec
(protocols/contract/events.py).

Topics (`P` = mqtt.prefix, `CAM` = a camera id):
  P/available             "online" (retained) while connected; the broker publishes the last will "offline"
                          (retained) when the bridge dies; a clean stop publishes "offline" itself
  P/CAM/state             camera.state JSON (retained: the current state; every camera's is published again on
                          each connect, so a camera that failed while the broker was away is not missed; a clean
                          stop leaves `unavailable` "the daemon stopped", so no consumer reads a stopped camera as live)
  P/CAM/scene             scene.change JSON
  P/CAM/proactive         a complete proactive message: response.done JSON + camera, scene, pts
  P/CAM/watch             a complete watch hit: response.done JSON + camera, watch_id (the owner's session id)
  P/stats                 stats JSON
  P/CAM/query      (in)   JSON {"id": "...", "text": "..."} or plain text (then an id is generated)
  P/CAM/answer/ID  (out)  the complete answer: response.done JSON + query_id, camera; or an error JSON

In a fleet (`fleet=FleetAnnouncer(...)`, fleet_announcer.py): P/nodes/NODE/available replaces P/available, only the
node's own cameras' P/CAM/query are subscribed, and a retained P/CAM/info is kept per camera.

    bridge = MQTTBridge(service, cfg.mqtt)
    await bridge.run()      # until cancelled; reconnects with jittered, capped exponential backoff

Overflow policies: incoming messages beyond MAX_INCOMING are dropped by aiomqtt (logged); queries beyond
MAX_CONCURRENT_QUERIES are answered with error `busy`; when the broker cannot keep up with events the service
subscription overflows and is renewed (counted in `events_dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from livesight.backoff import Backoff
from livesight.config import MQTTConfig
from livesight.errors import contain
from livesight.ids import new_id
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import ImageSource, ServiceAPI, ServiceError, StatsSnapshot
from livesight.protocols.contract.session import QueryRun
from livesight.protocols.mqtt.connect import BrokerConnection
from livesight.protocols.mqtt.fleet_announcer import FleetAnnouncer
from livesight.protocols.mqtt.ha_discovery import Naming
from livesight.protocols.mqtt.ha_publisher import HAPublisher
from livesight.types import (
    CameraState,
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseKind,
    SceneChange,
)

log = logging.getLogger(__name__)

MAX_CONCURRENT_QUERIES = 4
MAX_INCOMING = 64  # queued incoming MQTT messages (aiomqtt drops beyond)
MAX_PAYLOAD = 16 * 1024  # query payloads larger than this are refused
SUBSCRIPTION_SIZE = 256  # service events buffered for the broker
KEEPALIVE_S = 10  # default of mqtt.keepalive_s
STOP_TIMEOUT_S = 2.0  # publishing "offline" (and the cameras' last state) on a clean stop
STOPPED_STATE = "unavailable"  # P/CAM/state (and P/CAM/info) after a clean stop: nothing runs the camera
STOPPED_REASON = "the daemon stopped"


@dataclass
class BridgeCounters:
    connects: int = 0
    connection_failures: int = 0
    published: int = 0
    queries: int = 0
    queries_refused: int = 0
    events_dropped: int = 0  # service subscriptions that overflowed (the broker was too slow)


class MQTTBridge:
    def __init__(
        self,
        service: ServiceAPI,
        cfg: MQTTConfig,
        *,
        identifier: str | None = None,
        rng: random.Random | None = None,
        client_factory: Callable[..., aiomqtt.Client] = aiomqtt.Client,
        images: ImageSource | None = None,
        fleet: FleetAnnouncer | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.prefix = cfg.prefix.rstrip("/")
        self.identifier = identifier
        self.rng = rng or random.Random()
        self._client_factory = client_factory
        self.broker = BrokerConnection(cfg)  # host, port, TLS, credentials (connect.py)
        self.counters = BridgeCounters()
        self.connected = asyncio.Event()
        self._running: set[str] = set()  # query ids being answered
        self.fleet = fleet  # in a fleet: per-node availability, own query topics, retained camera info
        # Home Assistant discovery (ha_publisher.py), when mqtt.discovery is on; in a fleet each node names its own
        # entities and points them at its own availability topic
        naming = Naming.of(
            cfg.discovery_prefix,
            cfg.prefix,
            node=fleet.node if fleet is not None else None,
            availability=self.availability_topic,
        )
        self.ha = HAPublisher(service, naming, images=images) if cfg.discovery else None
        self.last_error = ""
        self.gave_up = False

    def health(self) -> dict[str, Any]:
        """The bridge's part of /healthz. Broker trouble degrades the daemon; it never fails it."""
        connected = self.connected.is_set()
        return {
            "state": "connected" if connected else ("gave_up" if self.gave_up else "disconnected"),
            "connected": connected,
            "reason": self.last_error,
            "connects": self.counters.connects,
            "connection_failures": self.counters.connection_failures,
        }

    @property
    def availability_topic(self) -> str:
        return self.fleet.availability_topic if self.fleet is not None else f"{self.prefix}/available"

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, bridge, reconnect on broker loss; returns only when attempts are exhausted (or cancelled).

        `reconnect.attempts` = N: give up after N reconnect attempts in a row fail (as a camera does)."""
        backoff = Backoff(self.cfg.reconnect, rng=self.rng)
        while True:
            connects_before = self.counters.connects
            try:
                await self._session()
            except aiomqtt.MqttError as e:
                self.counters.connection_failures += 1
                self.last_error = self.broker.describe(e)
                log.warning("MQTT %s: %s", self.broker.where, self.last_error)
            if self.counters.connects > connects_before:
                backoff.reset()  # it had connected: a lost connection starts the backoff over
            if backoff.exhausted:
                log.error("MQTT: giving up after %d reconnect attempts; the bridge is off", backoff.failures)
                self.gave_up = True
                return
            delay = backoff.next_delay()
            log.info("MQTT: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        will = aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True)
        client = self._client_factory(
            **self.broker.client_args(),
            identifier=self.identifier,
            will=will,
            keepalive=self.cfg.keepalive_s,
            timeout=10,
            max_queued_incoming_messages=MAX_INCOMING,
        )
        async with client:
            self.counters.connects += 1
            try:
                await client.publish(self.availability_topic, b"online", qos=1, retain=True)
                for topic in self.fleet.query_topics() if self.fleet is not None else [f"{self.prefix}/+/query"]:
                    await client.subscribe(topic, qos=1)
                for topic in self.ha.subscriptions if self.ha is not None else ():
                    await client.subscribe(topic, qos=1)
                if self.fleet is not None:
                    await client.subscribe(self.fleet.availability_topic, qos=1)
                    await self.fleet.announce(client, self.service.health())
                self.connected.set()
                log.info("MQTT: connected to %s (prefix %s)", self.broker.where, self.prefix)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._forward_events(client), name="mqtt:events")
                    tg.create_task(self._receive(client, tg), name="mqtt:receive")
                    if self.ha is not None:
                        tg.create_task(self.ha.run(client), name="mqtt:ha")
                    if self.fleet is not None:
                        tg.create_task(self.fleet.keep_fresh(client), name="mqtt:fleet-fresh")
            except asyncio.CancelledError:
                self.connected.clear()
                await self._say_offline(client)
                raise
            except BaseExceptionGroup as eg:
                lost = [e for e in eg.exceptions if isinstance(e, aiomqtt.MqttError)]
                if lost and len(lost) == len(eg.exceptions):
                    raise lost[0] from None  # the broker went away
                raise
            finally:
                self.connected.clear()

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Clean stop: the will is not sent on a clean disconnect, so say it ourselves; first every camera's retained
        state becomes `unavailable` (a consumer reading P/CAM/state or P/CAM/info must not be told it is live)."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.gather(*(self._say_stopped(client, cam) for cam in self.service.camera_ids()))
                await client.publish(self.availability_topic, b"offline", qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as e:
            log.warning("MQTT: could not publish offline on stop: %s", e)

    async def _say_stopped(self, client: aiomqtt.Client, camera: str) -> None:
        state = {"type": "camera.state", "camera": camera, "state": STOPPED_STATE, "reason": STOPPED_REASON}
        await self._publish(client, f"{self.prefix}/{camera}/state", {**state, "wall_time": time.time()}, retain=True)
        if self.fleet is not None:
            await self.fleet.announce_state(client, camera, STOPPED_STATE, STOPPED_REASON)

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: dict[str, Any], **kw: Any) -> None:
        await client.publish(topic, ev.dumps(payload).encode(), qos=kw.pop("qos", 1), **kw)
        self.counters.published += 1

    # ---- events out ----------------------------------------------------------------------------------------

    async def _forward_events(self, client: aiomqtt.Client) -> None:
        while True:
            sub = self.service.subscribe(maxsize=SUBSCRIPTION_SIZE)
            pending: OrderedDict[str, ResponseCreated] = OrderedDict()
            try:
                await self._publish_states(client)  # after subscribing: a later change follows it, in order
                async for item in sub:
                    await self._forward(client, item, pending)
            finally:
                sub.close()
            if not sub.overflowed:
                return  # the service closed it: the daemon is stopping
            self.counters.events_dropped += 1
            log.warning("MQTT: the broker could not keep up with events; some were dropped")

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        cams = self.service.health().get("cameras", {})
        for cam, st in cams.items():
            status = CameraStatus(cam, CameraState(st["state"]), st.get("reason", ""), st.get("since", 0.0))
            await self._forward(client, status, OrderedDict())

    async def _forward(self, client: aiomqtt.Client, item: Any, pending: OrderedDict[str, ResponseCreated]) -> None:
        p = self.prefix
        if isinstance(item, SceneChange):
            await self._publish(client, f"{p}/{item.camera}/scene", ev.encode_scene_change(item))
        elif isinstance(item, CameraStatus):
            await self._publish(client, f"{p}/{item.camera}/state", ev.encode_camera_state(item), retain=True)
            if self.fleet is not None:
                await self.fleet.on_state(client, item)
        elif isinstance(item, StatsSnapshot):
            await self._publish(client, f"{p}/stats", ev.encode_stats(item), qos=0)
        elif isinstance(item, ResponseCreated):
            if item.kind in (ResponseKind.PROACTIVE, ResponseKind.WATCH):
                pending[item.response_id] = item
                while len(pending) > 64:
                    pending.popitem(last=False)
        elif isinstance(item, ResponseDone):
            created = pending.pop(item.response_id, None)
            if created is None:
                return
            payload = ev.encode_response(item, kind=created.kind.value, watch_id=created.watch_id)
            payload.update(camera=created.camera, scene=created.scene, pts=ev.finite(created.pts))
            await self._publish(client, f"{p}/{created.camera}/{created.kind.value}", payload)
        elif isinstance(item, ResponseDelta):
            return  # MQTT gets whole messages

    # ---- questions in --------------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            if self.fleet is not None and topic == self.fleet.availability_topic:
                await self.fleet.on_own_availability(client, message.payload)
                continue
            if self.ha is not None and self.ha.on_message(topic, _payload(message)):
                continue
            parts = topic.split("/")
            if len(parts) < 2 or parts[-1] != "query":
                continue
            camera = parts[-2]
            if not ev.CAMERA_PATTERN.match(camera):
                log.warning("MQTT: ignoring a query on %r: not a camera id", topic)
                continue
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            query, error = self._parse_query(camera, bytes(payload))
            if error is not None:
                await self._answer_error(client, camera, error)
                continue
            assert query is not None
            if query.id in self._running or len(self._running) >= MAX_CONCURRENT_QUERIES:
                self.counters.queries_refused += 1
                code = ev.ErrorCode.DUPLICATE_ID if query.id in self._running else ev.ErrorCode.BUSY
                err = ev.ProtocolError(code, f"cannot take query {query.id!r} now ({code})", event_id=query.id)
                await self._answer_error(client, camera, err)
                continue
            self._running.add(query.id)
            tg.create_task(self._answer(client, query), name=f"mqtt:query:{query.id}")

    def _parse_query(self, camera: str, payload: bytes) -> tuple[ev.Query | None, ev.ProtocolError | None]:
        if len(payload) > MAX_PAYLOAD:
            return None, ev.ProtocolError(ev.ErrorCode.INVALID_MESSAGE, f"query larger than {MAX_PAYLOAD} bytes")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None, ev.ProtocolError(ev.ErrorCode.INVALID_MESSAGE, "query is not UTF-8 text")
        obj: Any
        stripped = text.lstrip()
        if stripped.startswith("{"):
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as e:
                return None, ev.ProtocolError(ev.ErrorCode.INVALID_JSON, f"not valid JSON: {e}")
            if isinstance(obj, dict):
                obj = {"type": "query", "id": obj.get("id", new_id("mqtt_")), **obj, "camera": camera}
                obj["type"] = "query"
        else:
            obj = {"type": "query", "id": new_id("mqtt_"), "text": text, "camera": camera}
        try:
            msg = ev.decode_client_obj(obj)
        except ev.ProtocolError as e:
            return None, e
        assert isinstance(msg, ev.Query)
        return msg, None

    async def _answer_error(self, client: aiomqtt.Client, camera: str, err: ev.ProtocolError) -> None:
        qid = err.event_id or "error"
        await self._publish(client, f"{self.prefix}/{camera}/answer/{qid}", ev.encode_error(err))

    async def _answer(self, client: aiomqtt.Client, q: ev.Query) -> None:
        """Run one query to the end and publish the whole answer (or an error) on P/CAM/answer/ID.

        The query's lifecycle is the session core's (`QueryRun`, as on the WebSocket face); MQTT keeps only its
        outcome: the `response.done` (plus camera) or the `error`."""
        camera = q.camera or ""
        topic = f"{self.prefix}/{camera}/answer/{q.id}"
        self.counters.queries += 1
        run = QueryRun(q.id, event_type=None)
        try:
            out: list[dict[str, Any]] = []
            agen = self.service.query(camera=q.camera, text=q.text, query_id=q.id)
            try:
                async for item in agen:
                    out = run.receive(item)
                    if run.done_sent:
                        break
            except ServiceError as e:
                out = run.fail(e)
            except Exception as e:  # a bug: this question fails (answered with the error), never the bridge
                contain("mqtt.query", e, log, f"MQTT query {q.id}")
                out = run.fail(e)
            finally:
                await _aclose(agen)
            if not run.done_sent and not (out and out[-1]["type"] == "error"):
                err = ev.ProtocolError(ev.ErrorCode.INTERNAL, "the answer ended without a result", event_id=q.id)
                out = [ev.encode_error(err)]
            payload = out[-1]
            if payload["type"] == "response.done":
                payload["camera"] = camera
            await self._publish(client, topic, payload)
            if self.ha is not None and payload["type"] == "response.done" and payload["status"] == "completed":
                await self.ha.message(client, camera, payload["text"], kind="query", question=q.text)
        finally:
            self._running.discard(q.id)


def _payload(message: aiomqtt.Message) -> bytes:
    return bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""


async def _aclose(agen: Any) -> None:
    aclose: Callable[[], Awaitable[None]] | None = getattr(agen, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):
            await aclose()
