"""One bounded HTTP client from the gateway to its nodes' `/fleet/api/…` (protocols/web/fleet_link.py).

    http = NodeHTTP(hub, token=fleet_token)
    answer = await http.get("a", "/api/cameras/cam1/scenes", {"limit": "5"})     # NodeAnswer, or raises
    async with http.stream("a", "/api/cameras/cam1/summary", {}) as (status, headers, chunks): …

Requests carry the fleet's credential — never the client's token, nor any header or parameter the node's routes do
not read — through one httpx client holding at most PER_NODE keep-alive connections per node. Bounded: an answer must
start within CONNECT_S + READ_S (a stream: each chunk within READ_S) and fit in MAX_BODY bytes (else NodeBadAnswer,
502); at most PER_NODE requests per node at once, the rest wait QUEUE_S at most (else NodeBusy, 503 `busy`); streams
(summaries, which last as long as their generation) have STREAMS_PER_NODE slots of their own. A node
that is not linked, or does not answer, raises NodeUnreachable with why (503 `camera_unavailable`, or named in a
merged answer's `missing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2 as httpx

from livesight.gateway.hub import UpstreamHub

log = logging.getLogger(__name__)

PER_NODE = 4  # connections (and requests at once) per node
STREAMS_PER_NODE = 4  # streamed answers (summaries) at once per node, apart: a long one never holds a picture's slot
QUEUE_S = 5.0  # a request waits this long at most for one of them
CONNECT_S = 3.0
READ_S = 10.0
MAX_BODY = 8 * 2**20  # a picture or a scenes list larger than this is refused (502)


class NodeUnreachable(Exception):
    """The node is not linked, or did not answer (the message says why)."""


class NodeBusy(Exception):
    """Too many requests to this node at once."""


class NodeBadAnswer(Exception):
    """The node answered more than MAX_BODY bytes."""


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    status: int
    headers: httpx.Headers
    body: bytes


def http_base(node_url: str) -> str:
    """ws://host:port/prefix → http://host:port/prefix (wss → https)."""
    if node_url.startswith("wss://"):
        return "https://" + node_url[len("wss://") :].rstrip("/")
    return "http://" + node_url.removeprefix("ws://").rstrip("/")


class NodeHTTP:
    def __init__(self, hub: UpstreamHub, *, token: str | None) -> None:
        self.hub = hub
        self.directory = hub.directory
        self.token = token
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stream_slots: dict[str, asyncio.Semaphore] = {}
        n = max(1, len(self.directory.nodes))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_S, connect=CONNECT_S),
            limits=httpx.Limits(
                max_connections=(PER_NODE + STREAMS_PER_NODE) * n + PER_NODE,
                max_keepalive_connections=PER_NODE * n,
                keepalive_expiry=4.0,  # below the node's keep-alive (uvicorn's 5 s): never reuse a closing one
            ),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between the gateway and its nodes
        )

    async def close(self) -> None:
        await self._client.aclose()

    def linked(self) -> list[str]:
        """The nodes with a connected link now."""
        return [n for n, link in self.hub.links.items() if link.connected]

    def _url(self, node: str, path: str) -> str:
        link = self.hub.links.get(node)
        url = self.directory.url(node)
        if link is None or not link.connected or url is None:
            raise NodeUnreachable(self.hub.unavailable_reason(node))
        return http_base(url) + "/fleet" + path

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    @contextlib.asynccontextmanager
    async def _slot(self, node: str, *, stream: bool = False) -> AsyncIterator[None]:
        slots, size = (self._stream_slots, STREAMS_PER_NODE) if stream else (self._slots, PER_NODE)
        slot = slots.setdefault(node, asyncio.Semaphore(size))
        try:
            async with asyncio.timeout(QUEUE_S):
                await slot.acquire()
        except TimeoutError:
            raise NodeBusy(f"too many {'streams' if stream else 'requests'} for node {node}") from None
        try:
            yield
        finally:
            slot.release()

    async def get(
        self, node: str, path: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> NodeAnswer:
        url = self._url(node, path)
        async with self._slot(node):
            try:
                async with self._client.stream("GET", url, params=params, headers=self._headers(headers)) as r:
                    body = bytearray()
                    async for chunk in r.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise NodeBadAnswer(f"node {node} answered more than {MAX_BODY} bytes")
                    return NodeAnswer(r.status_code, r.headers, bytes(body))
            except httpx.HTTPError as e:
                log.info("gateway: GET %s from node %s failed: %s", path, node, str(e) or type(e).__name__)
                raise NodeUnreachable(f"node {node} did not answer ({type(e).__name__})") from None

    @contextlib.asynccontextmanager
    async def stream(
        self, node: str, path: str, params: dict[str, str]
    ) -> AsyncIterator[tuple[int, httpx.Headers, AsyncIterator[bytes]]]:
        """A streamed answer (Server-Sent Events): (status, headers, its chunks). NodeUnreachable before it starts;
        a chunk that does not come within READ_S ends the chunks early (the stream is closed)."""
        url = self._url(node, path)
        async with self._slot(node, stream=True):
            try:
                async with self._client.stream("GET", url, params=params, headers=self._headers(None)) as r:

                    async def chunks() -> AsyncIterator[bytes]:
                        try:
                            async for chunk in r.aiter_raw():
                                yield chunk
                        except httpx.HTTPError as e:
                            log.info("gateway: stream %s from node %s ended: %s", path, node, type(e).__name__)

                    yield r.status_code, r.headers, chunks()
            except httpx.HTTPError as e:
                log.info("gateway: GET %s from node %s failed: %s", path, node, str(e) or type(e).__name__)
                raise NodeUnreachable(f"node {node} did not answer ({type(e).__name__})") from None
