"""The gateway's one WebSocket link to one node (the node's `/fleet` endpoint: livesight/protocols/web/fleet_link.py).

    link = NodeLink(node, directory, sink, token=fleet_token)
    task = tg.create_task(link.run())     # connects while the directory has the node online at a trusted address
    link.send(json_text)                  # False when not connected, its bounded queue is full, or its rate is spent

One link per node for the whole gateway, whatever the number of clients: the hub (hub.py) gives every client's
questions and watches ids unique on the link and maps the answers back. The link connects when the directory has the
node online with an address it may use (directory.py: the config's, or a signed announcement's), presents the fleet's
credential (`fleet.node_token`, never the clients' token), reads the node's `session.created`, then hands every later
message to `sink.upstream_event(link, obj, raw)`. It closes when the directory says the node went offline or its
address changed, and reconnects with jittered, capped backoff (woken early by a directory change): at most one
connection per node at any time (the old one is closed before a new one is opened). State changes go to
`sink.link_up(link, hello)` / `sink.link_down(link, reason)`.

The node's session limits for the link (its `session.created` says them) are kept on this side too: messages beyond
90 % of its rate are refused here (`send` → False: the client gets `busy`) rather than dropped there unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from livesight.backoff import backoff_delay
from livesight.config import ReconnectConfig
from livesight.gateway.directory import Directory
from livesight.protocols.contract.session import TokenBucket

log = logging.getLogger(__name__)

LINK_PATH = "/fleet"  # the node's gateway endpoint (protocols/web/fleet_link.py)
SEND_QUEUE = 4096  # messages waiting for the node (every client's share the link)
OPEN_TIMEOUT_S = 5.0
MAX_UPSTREAM_MESSAGE = 16 * 2**20  # a node's largest event (stats of 64 cameras, a long answer)
RATE_SHARE = 0.9  # of the node's announced rate and burst: what this side lets through
RECONNECT = ReconnectConfig(initial_s=0.2, max_s=5.0, multiplier=2.0, jitter=0.2)


def link_url(node_url: str) -> str:
    """The node's link endpoint under its WebSocket URL (ws://host:port → ws://host:port/fleet)."""
    return node_url.rstrip("/") + LINK_PATH


class LinkSink(Protocol):
    def link_up(self, link: NodeLink, hello: dict[str, Any]) -> None: ...

    def link_down(self, link: NodeLink, reason: str) -> None: ...

    def upstream_event(self, link: NodeLink, obj: dict[str, Any], raw: str) -> None: ...


class NodeLink:
    def __init__(
        self,
        node: str,
        directory: Directory,
        sink: LinkSink,
        *,
        token: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.directory = directory
        self.sink = sink
        self.token = token
        self.rng = rng or random.Random()
        self.connected = False
        self.attempted = asyncio.Event()  # set after the first attempt (or at once when the node is unreachable)
        self.connects = 0
        self.failures = 0
        self.refused = 0  # messages refused on this side (queue full or rate spent)
        self.open_connections = 0  # WebSocket connections open now (0 or 1)
        self.max_queries = 1024  # the node's limits for the link, from its session.created
        self.since = time.time()
        self.last_error = ""
        self._bucket: TokenBucket | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SEND_QUEUE)
        self._closed_why = ""

    def send(self, raw: str) -> bool:
        if not self.connected:
            return False
        if self._bucket is not None and not self._bucket.take():
            self.refused += 1
            return False
        try:
            self._queue.put_nowait(raw)
        except asyncio.QueueFull:
            self.refused += 1
            return False
        return True

    async def run(self) -> None:
        attempt = 0
        version = self.directory.version
        while True:
            url = self.directory.url(self.node) if self.directory.online(self.node) else None
            if url is None:
                self.attempted.set()
                version = await self.directory.wait_changed(version)
                continue
            ok = await self._connect_once(url)
            self.attempted.set()
            attempt = 0 if ok else attempt + 1
            delay = backoff_delay(RECONNECT, attempt, self.rng)
            with contextlib.suppress(TimeoutError):  # a directory change (node back online) retries at once
                async with asyncio.timeout(delay):
                    version = await self.directory.wait_changed(self.directory.version)

    async def _connect_once(self, url: str) -> bool:
        """One connection, until it ends. True when it had connected."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self.open_connections += 1
            async with connect(
                link_url(url),
                additional_headers=headers,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_UPSTREAM_MESSAGE,
                max_queue=64,
                compression=None,
                proxy=None,
                ping_interval=10,
                ping_timeout=10,
                close_timeout=2,
                user_agent_header="livesight-gateway",
            ) as ws:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    hello = json.loads(await ws.recv())
                if not isinstance(hello, dict) or hello.get("type") != "session.created":
                    raise ValueError(f"expected session.created, got {str(hello)[:80]!r}")
                await self._up(ws, url, hello)
                return True
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, ValueError) as e:
            self.failures += 1
            self.last_error = _why(e)[:300]
            log.info("gateway: cannot reach node %s at %s: %s", self.node, url, self.last_error)
            return False
        finally:
            self.open_connections -= 1

    async def _up(self, ws: ClientConnection, url: str, hello: dict[str, Any]) -> None:
        self._drain()
        self._closed_why = ""
        self._limits(hello.get("limits"))
        self.connected = True
        self.connects += 1
        self.since = time.time()
        self.last_error = ""
        reason = "connection lost"
        self.attempted.set()
        try:
            self.sink.link_up(self, hello)
            reason = await self._serve(ws, url)
        except ConnectionClosed as e:
            reason = f"connection lost ({e.rcvd.code if e.rcvd else 'no close frame'})"
        finally:
            self.connected = False
            self.since = time.time()
            self.last_error = reason
            self.sink.link_down(self, reason)

    def _limits(self, limits: Any) -> None:
        """The node's session limits for the link, kept on this side too (the node's bucket refills on its clock)."""
        self._bucket = None
        if not isinstance(limits, dict):
            return
        rate, burst, queries = limits.get("rate_per_s"), limits.get("burst"), limits.get("max_concurrent_queries")
        if isinstance(rate, int | float) and isinstance(burst, int | float) and rate > 0 and burst >= 1:
            self._bucket = TokenBucket(float(rate) * RATE_SHARE, max(1, int(burst * RATE_SHARE)))
        if isinstance(queries, int) and queries > 0:
            self.max_queries = queries

    async def _serve(self, ws: ClientConnection, url: str) -> str:
        """Pump both ways until the connection ends or the directory moves the node; returns why it ended."""
        writer = asyncio.create_task(self._writer(ws), name=f"gateway:link:{self.node}:writer")
        watcher = asyncio.create_task(self._watch(ws, url), name=f"gateway:link:{self.node}:watch")
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    self.sink.upstream_event(self, obj, raw)
            return self._closed_why or "the node closed the connection"
        finally:
            for t in (writer, watcher):
                t.cancel()
            await asyncio.gather(writer, watcher, return_exceptions=True)

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            raw = await self._queue.get()
            await ws.send(raw)

    async def _watch(self, ws: ClientConnection, url: str) -> None:
        version = self.directory.version
        while self.directory.online(self.node) and self.directory.url(self.node) == url:
            version = await self.directory.wait_changed(version)
        self._closed_why = "node went offline" if not self.directory.online(self.node) else "node moved"
        await ws.close(1001, self._closed_why)

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__
