"""One WebSocket connection from a gateway client session to one node (the node's own protocol, unchanged).

    link = NodeLink(node, directory, sink, token=…)
    task = tg.create_task(link.run())     # connects while the directory says the node is online, reconnects
    link.send(json_text)                  # False when not connected or its bounded queue is full

The link connects when the directory has the node online with a URL, reads the node's `session.created`, then hands
every later message to `sink.upstream_event(link, obj, raw)`. It closes when the directory says the node went offline
or its URL changed, and reconnects with jittered, capped backoff (woken early by a directory change). State changes
go to `sink.link_up(link, hello)` / `sink.link_down(link, reason)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from livesight.backoff import backoff_delay
from livesight.config import ReconnectConfig
from livesight.gateway.directory import Directory

log = logging.getLogger(__name__)

SEND_QUEUE = 64  # client messages waiting for one node
OPEN_TIMEOUT_S = 5.0
MAX_UPSTREAM_MESSAGE = 4 * 2**20
RECONNECT = ReconnectConfig(initial_s=0.2, max_s=5.0, multiplier=2.0, jitter=0.2)


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
        self.attempted = asyncio.Event()  # set after the first attempt (or at once when the node is offline)
        self.connects = 0
        self.failures = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SEND_QUEUE)
        self._ws: ClientConnection | None = None
        self._closed_why = ""

    def send(self, raw: str) -> bool:
        if not self.connected:
            return False
        try:
            self._queue.put_nowait(raw)
        except asyncio.QueueFull:
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
            async with connect(
                url,
                additional_headers=headers,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_UPSTREAM_MESSAGE,
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
            log.info("gateway: cannot reach node %s at %s: %s", self.node, url, _why(e))
            return False

    async def _up(self, ws: ClientConnection, url: str, hello: dict[str, Any]) -> None:
        self._drain()
        self._closed_why = ""
        self._ws = ws
        self.connected = True
        self.connects += 1
        reason = "connection lost"
        self.attempted.set()
        try:
            self.sink.link_up(self, hello)
            reason = await self._serve(ws, url)
        except ConnectionClosed as e:
            reason = f"connection lost ({e.rcvd.code if e.rcvd else 'no close frame'})"
        finally:
            self.connected = False
            self._ws = None
            self.sink.link_down(self, reason)

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
