"""What tests share: free ports, polling, WebSocket and raw-HTTP clients, the tiny model, a served echo pipeline.

    port = free_port()
    await eventually(lambda: svc.responses.active == 0, what="answer closed")      # poll plain state
    e, before = await recv_until(ws, lambda e: e["type"] == "response.done")      # read events until one matches
    status, headers, body = await http_get(port, "/healthz")                       # one raw HTTP/1.1 request
    backend = tiny_backend()                                                       # built once per test session
    r = await start_server(pipeline(...), auth_token=...)  ...  await stop_server(r)

The fixtures built on these (`running`, `tiny_backend`, `broker`, `prefix`) are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from livesight.config import ModelConfig, ServerConfig
from livesight.protocols.web.server import WebServer
from livesight.protocols.web.ws_session import ClientLimits
from tests.pipeline import Pipeline, pipeline

# ---- ports, polling ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for servers that cannot take port 0, e.g. a subprocess told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(pred: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll a plain state predicate (for state that has no event to wait on); fail naming `what`."""
    try:
        async with asyncio.timeout(within):
            while not pred():  # noqa: ASYNC110 - polling state that exposes no event
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {within} s") from None


# ---- the tiny model -------------------------------------------------------------------------------------------


@functools.cache
def tiny_backend(max_new_tokens: int = 8) -> Any:
    """The tiny random-weight Qwen2.5-VL (same code path as a real checkpoint), built once per test session per
    `max_new_tokens`: ~1 s to build, never mutated by the tests that share it."""
    from livesight.model.qwen import load_backend

    return load_backend(ModelConfig(preset="tiny-random", max_new_tokens=max_new_tokens))


# ---- WebSocket ------------------------------------------------------------------------------------------------


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


# ---- raw HTTP/1.1 ---------------------------------------------------------------------------------------------


async def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a raw socket; the connection is read to its end (the server closes it)."""
    return await http_request(port, method, path, headers=headers)


async def http_post(port: int, path: str, body: bytes, *, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if auth:
        headers["Authorization"] = f"Bearer {auth}"
    return await http_request(port, "POST", path, headers=headers, body=body, within=10)


def request_head(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def http_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    within: float = 5,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body (chunked transfer decoded) of one raw request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_head(port, method, path, headers) + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), within)
    writer.close()
    await writer.wait_closed()
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs: dict[str, str] = {}
    for h in header_lines:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return int(status_line.split()[1]), hdrs, body


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked HTTP/1.1 body (RFC 9112 §7.1)."""
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


# ---- a served echo pipeline -----------------------------------------------------------------------------------


@dataclass
class Running:
    pipe: Pipeline  # the real Service and model worker, echo backend (tests/pipeline.py)
    server: WebServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


async def start_server(pipe: Pipeline | None = None, *, limits: ClientLimits | None = None, **cfg: Any) -> Running:
    pipe = (pipe or pipeline()).start()
    server = WebServer(pipe.service, ServerConfig(host="127.0.0.1", port=0, **cfg), limits=limits)
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
