from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from livesight.config import ServerConfig
from livesight.protocols.ws_server import WSServer
from livesight.protocols.ws_session import ClientLimits
from tests.protocols.pipeline import Pipeline, pipeline


@dataclass
class Running:
    pipe: Pipeline  # the real Service and model worker, echo backend (tests/protocols/pipeline.py)
    server: WSServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


async def start_server(pipe: Pipeline | None = None, *, limits: ClientLimits | None = None, **cfg: Any) -> Running:
    pipe = (pipe or pipeline()).start()
    server = WSServer(pipe.service, ServerConfig(host="127.0.0.1", port=0, **cfg), limits=limits)
    try:
        port = await server.start()
    except BaseException:
        await pipe.stop()
        raise
    return Running(pipe, server, port)


async def stop_server(r: Running) -> None:
    try:
        await r.server.close()
    finally:
        await r.pipe.stop()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    r = await start_server()
    try:
        yield r
    finally:
        await stop_server(r)


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def recv_until(ws: ClientConnection, pred: Any, within: float = 10.0) -> tuple[dict[str, Any], list[dict]]:
    """Receive until pred(event) is true; return that event and every event before it.

    Fails with the events that did arrive (a CI log then says what happened instead, e.g. a camera that went
    unavailable), not with a bare TimeoutError."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while True:
                e = json.loads(await ws.recv())
                if pred(e):
                    return e, seen
                seen.append(e)
    except TimeoutError:
        got = [_brief(e) for e in seen[-20:]]
        raise AssertionError(f"no matching event within {within} s; {len(seen)} others came, the last: {got}") from None


def _brief(e: dict[str, Any]) -> str:
    keys = ("kind", "camera", "state", "status", "query_id", "code")
    return " ".join([str(e.get("type"))] + [f"{k}={e[k]}" for k in keys if e.get(k) is not None])


async def eventually(pred: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll a plain state predicate (for state that has no event to wait on)."""
    try:
        async with asyncio.timeout(within):
            while not pred():  # noqa: ASYNC110 - polling state that exposes no event
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {within} s") from None


async def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 request over a raw socket (the server closes after each response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for h in header_lines:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, body
