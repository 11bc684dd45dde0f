"""Who may reach the port (protocols/web/access.py), daemon and gateway alike: the Host check against DNS rebinding, the
client limit (server.max_clients) and the per-client watch quota (server.watches_per_client)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from livesight.config import ServerConfig
from livesight.gateway.directory import Directory
from livesight.gateway.server import GatewayServer
from tests.helpers import (
    Running,
    eventually,
    http_post,
    parse_response,
    recv_json,
    recv_until,
    start_server,
    stop_server,
)

WS_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


async def raw(port: int, path: str, host: str | None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET with exactly these headers (Host as given, or none): status and body."""
    lines = [f"GET {path} HTTP/1.1"] + ([f"Host: {host}"] if host is not None else [])
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)  # a handshake that is accepted stays open: read what came
    writer.close()
    await writer.wait_closed()
    status, _, body = parse_response(data)
    return status, body


LOOPBACK = ["127.0.0.1:{port}", "localhost:{port}", "LocalHost", "[::1]:{port}", "[::1]", "::1", "127.0.0.1"]
FOREIGN = ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "192.168.1.20:{port}", "", None]


@pytest.mark.parametrize("path", ["/healthz", "/", "/metrics", "/api/cameras/cam1/latest.jpg", "/v1/models"])
async def test_without_a_token_only_loopback_host_names_are_served(running: Running, path: str) -> None:
    """DNS rebinding: a page at evil.example that rebinds its name to 127.0.0.1 sends `Host: evil.example:PORT`."""
    for host in FOREIGN:
        status, body = await raw(running.port, path, host.format(port=running.port) if host is not None else None)
        assert status == 421, (host, status, body)
        assert b"localhost" in body
    for host in LOOPBACK:
        status, _ = await raw(running.port, path, host.format(port=running.port))
        assert status != 421, host


async def test_without_a_token_a_websocket_with_a_foreign_host_is_refused(running: Running) -> None:
    status, _ = await raw(running.port, "/", f"evil.example:{running.port}", WS_UPGRADE)
    assert status == 421
    status, _ = await raw(running.port, "/", f"localhost:{running.port}", WS_UPGRADE)
    assert status == 101
    assert running.server.gate.refused["host"] == 1


async def test_with_a_token_any_host_is_served_to_whoever_has_the_token() -> None:
    r = await start_server(auth_token="sekrit-token")
    try:
        bearer = {"Authorization": "Bearer sekrit-token"}
        assert (await raw(r.port, "/metrics", "camera-box.lan:8765", bearer))[0] == 200
        assert (await raw(r.port, "/metrics", "camera-box.lan:8765"))[0] == 401
        assert (await raw(r.port, "/", "camera-box.lan:8765", {**WS_UPGRADE, **bearer}))[0] == 101
    finally:
        await stop_server(r)


async def test_the_gateway_refuses_foreign_hosts_too() -> None:
    gw = GatewayServer(Directory({"door": "a"}, nodes=["a"]), ServerConfig(port=0))
    port = await gw.start()
    try:
        assert (await raw(port, "/healthz", f"evil.example:{port}"))[0] == 421
        assert (await raw(port, "/", f"evil.example:{port}", WS_UPGRADE))[0] == 421
        assert (await raw(port, "/healthz", f"localhost:{port}"))[0] == 503  # starting (no broker): but served
        status, body = await raw(port, "/metrics", f"localhost:{port}")
        assert status == 200
        assert b'livesight_http_refused_total{reason="host"} 2.0' in body  # counted as on a daemon
    finally:
        await gw.close()


async def test_max_clients_refuses_websockets_and_v1_requests_beyond_it() -> None:
    r = await start_server(max_clients=2)
    try:
        async with connect(r.url) as a, connect(r.url) as b:
            for ws in (a, b):
                await recv_json(ws)
            with pytest.raises(InvalidStatus) as refused:
                async with connect(r.url):
                    pass
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers["Retry-After"]
            body = json.dumps({"model": "cam1", "messages": [{"role": "user", "content": "hi"}]}).encode()
            status, headers, data = await http_post(r.port, "/v1/chat/completions", body)
            assert status == 503 and headers["retry-after"]
            assert json.loads(data)["error"]["code"] == "too_many_clients"
            assert r.server.gate.refused["clients"] == 2
        # the slots are given back when the clients leave
        await eventually(lambda: r.server.gate.clients == 0, what="the slots given back")
        async with connect(r.url) as c:
            assert (await recv_json(c))["type"] == "session.created"
        status, _, _ = await http_post(r.port, "/v1/chat/completions", body)
        assert status == 200
        _, _, metrics = await raw_metrics(r.port)
        assert 'livesight_http_refused_total{reason="clients"} 2.0' in metrics
        assert "livesight_clients_max 2.0" in metrics
    finally:
        await stop_server(r)


async def raw_metrics(port: int) -> tuple[int, dict[str, str], str]:
    from tests.helpers import http_get

    status, headers, body = await http_get(port, "/metrics")
    return status, headers, body.decode()


async def _add_watches(ws, n: int, tag: str) -> int:
    """Ask for n watches; return how many were added (the rest refused with limit_exceeded)."""
    added = 0
    for i in range(n):
        await ws.send(json.dumps({"type": "watch.add", "id": f"{tag}{i}", "text": "is a door open?"}))
        e, _ = await recv_until(ws, lambda e: e["type"] in ("watch.added", "error"))
        if e["type"] == "watch.added":
            added += 1
        else:
            assert e["code"] == "limit_exceeded", e
    return added


async def test_a_few_clients_cannot_take_every_watch(running: Running) -> None:
    """The daemon-wide limit (server.max_watches, 64) is shared: each client holds at most watches_per_client (4),
    so 64 / 4 = 16 clients fill it — not the 4 clients that took all 64 before (16 each)."""
    url = running.url
    async with connect(url) as a, connect(url) as b, connect(url) as c, connect(url) as d:
        for ws in (a, b, c, d):
            await recv_json(ws)
        greedy = [await _add_watches(ws, 16, f"g{i}-") for i, ws in enumerate((a, b, c, d))]
        assert greedy == [4, 4, 4, 4]
        async with connect(running.url) as late:
            hello = await recv_json(late)
            assert hello["limits"]["max_watches"] == 4
            assert await _add_watches(late, 2, "late-") == 2
        # the late client's watches went with its session
        await eventually(lambda: len(running.pipe.service.watches) == 16, what="the late client's watches removed")


async def test_malformed_requests_are_400(running: Running) -> None:
    port = running.port
    many = "&".join(f"p{i}=1" for i in range(65))
    assert (await raw(port, f"/healthz?{many}", f"127.0.0.1:{port}"))[0] == 400
    assert (await raw(port, f"/healthz?x={'a' * 5000}", f"127.0.0.1:{port}"))[0] == 400
    assert (await raw(port, "/healthz", f"127.0.0.1:{port}", {"Host": "evil.example"}))[0] == 400  # two Hosts
    assert (await raw(port, f"/?{many}", f"127.0.0.1:{port}", WS_UPGRADE))[0] == 400
    assert (await raw(port, "/healthz?" + "&".join(f"p{i}=1" for i in range(60)), f"127.0.0.1:{port}"))[0] == 200
    assert running.server.gate.refused["malformed"] == 4
