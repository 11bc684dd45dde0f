"""The WebSocket server with real `websockets` clients on port 0, over the daemon's real Service and model worker
(echo backend, no cameras: tests/pipeline.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livesight.errors import ServeError
from livesight.protocols.contract.api import StatsSnapshot
from livesight.protocols.web.ws_session import ClientLimits
from livesight.types import CameraState
from tests.helpers import Running, eventually, http_get, recv_json, recv_until, start_server, stop_server
from tests.pipeline import pipeline


async def hello(ws) -> dict:
    created = await recv_json(ws)
    assert created["type"] == "session.created"
    stats = await recv_json(ws)
    assert stats["type"] == "stats"
    return created


async def test_session_created_then_a_streamed_answer(running: Running) -> None:
    running.pipe.backend.token_delay_s = 0.005  # a measurable time to first token
    async with connect(running.url) as ws:
        created = await hello(ws)
        assert created["session"]["camera"] == "cam1" and created["session"]["proactive"] is True
        assert [c["id"] for c in created["cameras"]] == ["cam1", "cam2"]
        assert created["limits"]["max_text_chars"] == 2000
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "what is on the table?", "camera": "cam2"}))
        done, seen = await recv_until(ws, lambda e: e["type"] == "response.done")
    assert seen[0]["type"] == "response.created"
    assert seen[0]["query_id"] == "q1" and seen[0]["camera"] == "cam2" and seen[0]["kind"] == "query"
    deltas = [e for e in seen if e["type"] == "response.delta"]
    text = "".join(d["delta"] for d in deltas)
    assert text.endswith("You asked: what is on the table?") and len(deltas) == len(text.split())
    assert all(d["query_id"] == "q1" and d["response_id"] == seen[0]["response_id"] for d in deltas)
    assert done["status"] == "completed" and done["query_id"] == "q1" and done["text"] == text
    assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": len(deltas)} and done["ttft_ms"] > 0


async def test_bad_messages_get_errors_and_the_connection_stays_up(running: Running) -> None:
    async with connect(running.url) as ws:
        await hello(ws)
        for raw, code in [
            ("{oops", "invalid_json"),
            ('{"type":"dance"}', "unknown_type"),
            ('{"type":"query","id":"q1"}', "missing_field"),
            (b"\x00\x01", "invalid_json"),
            ('{"type":"query","id":"q2","text":"hi","camera":"garage"}', "unknown_camera"),
            ('{"type":"query.cancel","id":"nope"}', "unknown_id"),
            ('{"type":"watch.remove","id":"nope"}', "unknown_id"),
            ('{"type":"session.update","camera":"garage"}', "unknown_camera"),
        ]:
            await ws.send(raw)
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == code, (raw, err)
        assert err["event_type"] == "session.update"
        await ws.send(json.dumps({"type": "query", "id": "q3", "text": "still there?"}))
        done, _ = await recv_until(ws, lambda e: e["type"] == "response.done")
        assert done["status"] == "completed"


async def test_error_names_the_offending_event(running: Running) -> None:
    async with connect(running.url) as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "query", "id": "q7", "text": "hi", "camera": "garage"}))
        err = await recv_json(ws)
    assert err == {
        "type": "error",
        "code": "unknown_camera",
        "message": "unknown camera 'garage' (cameras: cam1, cam2)",
        "event_id": "q7",
        "event_type": "query",
    }


async def test_session_update_changes_default_camera_and_proactive(running: Running) -> None:
    pipe = running.pipe
    async with connect(running.url) as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "session.update", "camera": "cam2", "proactive": False}))
        upd = await recv_json(ws)
        assert upd == {
            "type": "session.updated",
            "session": {"id": upd["session"]["id"], "camera": "cam2", "proactive": False},
        }
        pipe.proactive("a dog walks in")
        pipe.scene("cam2", 5)
        ev = await recv_json(ws)  # the proactive answer was filtered out
        assert ev["type"] == "scene.change" and ev["camera"] == "cam2" and ev["scene"] == 5
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "hello"}))
        created = await recv_json(ws)
        assert created["camera"] == "cam2"


async def test_broadcasts_reach_every_client(running: Running) -> None:
    pipe = running.pipe
    async with connect(running.url) as a, connect(running.url) as b:
        await hello(a)
        await hello(b)
        pipe.scene("cam1", 3)
        pipe.camera_state("cam2", CameraState.RECONNECTING)
        rid = pipe.proactive("a person sits down")
        for ws in (a, b):
            scene = await recv_json(ws)
            assert scene["type"] == "scene.change" and scene["scene"] == 3 and scene["score"] == 4.2
            state = await recv_json(ws)
            assert state == {
                "type": "camera.state",
                "camera": "cam2",
                "state": "reconnecting",
                "reason": "connection refused",
                "wall_time": state["wall_time"],
            }
            done, seen = await recv_until(ws, lambda e: e["type"] == "response.done")
            assert seen[0]["type"] == "response.created" and seen[0]["kind"] == "proactive"
            assert seen[0]["response_id"] == rid and seen[0]["scene"] == 2
            assert "".join(e["delta"] for e in seen[1:]) == "a person sits down"
            assert all(e["kind"] == "proactive" for e in seen[1:]) and done["kind"] == "proactive"


async def test_stats_are_forwarded(running: Running) -> None:
    async with connect(running.url) as ws:
        await hello(ws)
        running.pipe.publish(StatsSnapshot(1.5, {"cam1": {"frames_in": 3}}, {"clients": 1}))
        ev = await recv_json(ws)
    assert ev == {"type": "stats", "wall_time": 1.5, "cameras": {"cam1": {"frames_in": 3}}, "totals": {"clients": 1}}


async def test_watches_belong_to_their_session(running: Running) -> None:
    pipe = running.pipe
    svc = pipe.service
    async with connect(running.url) as a, connect(running.url) as b:
        sa = (await hello(a))["session"]["id"]
        await hello(b)
        await a.send(json.dumps({"type": "watch.add", "id": "w1", "text": "a person enters", "camera": "cam2"}))
        assert await recv_json(a) == {"type": "watch.added", "id": "w1", "camera": "cam2", "text": "a person enters"}
        assert [(w.watch_id, w.camera, w.text) for w in svc.watches.values()] == [
            (f"{sa}:w1", "cam2", "a person enters")
        ]
        pipe.watch_hit(f"{sa}:w1", "yes, someone came in")
        await recv_until(a, lambda e: e["type"] == "response.created")
        pipe.scene("cam1", 9)  # a marker: b sees only this
        done, seen = await recv_until(a, lambda e: e["type"] == "response.done")
        assert seen[0]["kind"] == "watch" and seen[0]["watch_id"] == "w1" and done["watch_id"] == "w1"
        assert done["text"] == "yes, someone came in"
        first_b = await recv_json(b)
        assert first_b["type"] == "scene.change"
        await a.send(json.dumps({"type": "watch.remove", "id": "w1"}))
        _, _ = await recv_until(a, lambda e: e["type"] == "watch.removed")
        assert svc.watches == {}
        await a.send(json.dumps({"type": "watch.add", "id": "w2", "text": "a cat"}))
        await recv_until(a, lambda e: e["type"] == "watch.added")
        assert len(svc.watches) == 1
    await eventually(lambda: svc.watches == {}, what="a session's watches end with it")


async def test_cancel_a_running_query(running: Running) -> None:
    pipe = running.pipe
    svc = pipe.service
    pipe.hold()
    async with connect(running.url) as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "long question"}))
        created = await recv_json(ws)
        assert created["type"] == "response.created"
        await ws.send(json.dumps({"type": "query.cancel", "id": "q1"}))
        done = await recv_json(ws)
        assert done["type"] == "response.done" and done["status"] == "cancelled" and done["query_id"] == "q1"
        assert svc.responses.active == 0  # the service cancelled it
        # cancel by response id works too
        await ws.send(json.dumps({"type": "query", "id": "q2", "text": "another"}))
        created = await recv_json(ws)
        await ws.send(json.dumps({"type": "query.cancel", "id": created["response_id"]}))
        done = await recv_json(ws)
        assert done["status"] == "cancelled" and done["query_id"] == "q2"


async def test_concurrent_queries_are_bounded_per_client(running: Running) -> None:
    pipe = running.pipe
    gate = pipe.hold()
    async with connect(running.url) as ws:
        created = await hello(ws)
        limit = created["limits"]["max_concurrent_queries"]
        for i in range(limit):
            await ws.send(json.dumps({"type": "query", "id": f"q{i}", "text": f"question {i}"}))
        ids = set()
        for _ in range(limit):
            ev = await recv_json(ws)
            assert ev["type"] == "response.created"
            ids.add(ev["query_id"])
        assert ids == {f"q{i}" for i in range(limit)}
        await ws.send(json.dumps({"type": "query", "id": "q0", "text": "again"}))
        err = await recv_json(ws)
        assert err["code"] == "duplicate_id" and err["event_id"] == "q0"
        await ws.send(json.dumps({"type": "query", "id": "extra", "text": "one more"}))
        err = await recv_json(ws)
        assert err["code"] == "busy" and err["event_id"] == "extra"
        gate.set()
        dones = set()
        async with asyncio.timeout(5):
            while len(dones) < limit:
                ev = await recv_json(ws)
                if ev["type"] == "response.done":
                    dones.add(ev["query_id"])
        assert dones == ids


async def test_full_service_queue_is_busy() -> None:
    r = await start_server(pipeline(response_queue_size=0))
    try:
        async with connect(r.url) as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "query", "id": "q1", "text": "hi"}))
            err = await recv_json(ws)
            assert err["code"] == "busy" and err["event_id"] == "q1" and "too many questions" in err["message"]
    finally:
        await stop_server(r)


async def test_disconnect_cancels_running_queries(running: Running) -> None:
    pipe = running.pipe
    svc = pipe.service
    pipe.hold()
    async with connect(running.url) as ws:
        await hello(ws)
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "hold"}))
        await recv_json(ws)
        assert svc.responses.active == 1
    await eventually(lambda: svc.responses.active == 0, what="query cancelled")


async def test_oversized_message_closes_with_1009() -> None:
    r = await start_server(max_message_bytes=1024)
    try:
        async with connect(r.url) as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "query", "id": "q1", "text": "x" * 2000}))
            with pytest.raises(ConnectionClosed) as info:
                await recv_json(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        await stop_server(r)


async def test_healthz_metrics_and_page(running: Running) -> None:
    pipe = running.pipe
    pipe.service.counters["cam1"].frames_dropped_queue = 2  # as cam1's queue would count them
    pipe.frame("cam2", np.full((56, 56, 3), 90, np.uint8), 0.0)  # encoded by the worker: 2x2 tokens, all kept
    await eventually(lambda: pipe.service.counters["cam2"].tokens_kept == 4, what="frame through DTD and memory")
    status, headers, body = await http_get(running.port, "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["cameras"]["cam1"]["state"] == "live"
    running.pipe.service.ready = False
    status, _, body = await http_get(running.port, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "starting"
    status, headers, body = await http_get(running.port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'livesight_frames_dropped_total{camera="cam1"} 2.0' in text
    assert 'livesight_tokens_kept_total{camera="cam2"} 4.0' in text
    assert 'livesight_camera_kv_tokens{camera="cam2"} 4.0' in text
    assert "livesight_ws_clients 0.0" in text
    assert "livesight_query_ttft_seconds_bucket" in text
    status, _, _ = await http_get(running.port, "/etc/passwd")
    assert status == 404
    status, _, _ = await http_get(running.port, "/../index.html")
    assert status == 404
    status, headers, _ = await http_get(running.port, "/healthz", method="POST")
    assert status == 405 and headers["allow"] == "GET"


async def test_metrics_count_clients_queries_and_errors(running: Running) -> None:
    async with connect(running.url) as ws:
        await hello(ws)
        await ws.send("{bad")
        await recv_json(ws)
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "hi"}))
        await recv_until(ws, lambda e: e["type"] == "response.done")
        _, _, body = await http_get(running.port, "/metrics")
    text = body.decode()
    assert "livesight_ws_clients 1.0" in text
    assert 'livesight_ws_errors_total{code="invalid_json"} 1.0' in text
    assert 'livesight_queries_total{status="completed"} 1.0' in text
    assert 'livesight_ws_messages_total{type="query"} 1.0' in text
    assert "livesight_query_ttft_seconds_count 1.0" in text


async def test_auth_token_header_or_query_parameter() -> None:
    r = await start_server(auth_token="s3cret")
    try:
        with pytest.raises(InvalidStatus) as info:
            async with connect(r.url):
                pass
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(r.url, additional_headers={"Authorization": "Bearer wrong"}):
                pass
        async with connect(r.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            await hello(ws)
        async with connect(r.url + "/?token=s3cret") as ws:
            await hello(ws)
        status, _, body = await http_get(r.port, "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}  # no camera details without the token
        status, _, body = await http_get(r.port, "/healthz?token=s3cret")
        assert "cameras" in json.loads(body)
        status, headers, _ = await http_get(r.port, "/metrics")
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        status, _, _ = await http_get(r.port, "/metrics", {"Authorization": "Bearer s3cret"})
        assert status == 200
    finally:
        await stop_server(r)


async def test_browser_origins() -> None:
    r = await start_server()
    try:
        with pytest.raises(InvalidStatus) as info:
            async with connect(r.url, origin="http://evil.example"):
                pass
        assert info.value.response.status_code == 403
        async with connect(r.url, origin=f"http://127.0.0.1:{r.port}") as ws:
            await hello(ws)
    finally:
        await stop_server(r)
    r = await start_server(allowed_origins=["https://ops.example"])
    try:
        async with connect(r.url, origin="https://ops.example") as ws:
            await hello(ws)
        with pytest.raises(InvalidStatus):
            async with connect(r.url, origin=f"http://127.0.0.1:{r.port}"):
                pass
    finally:
        await stop_server(r)


async def test_websocket_only_on_root_or_ws(running: Running) -> None:
    async with connect(running.url + "/ws") as ws:
        await hello(ws)
    with pytest.raises(InvalidStatus) as info:
        async with connect(running.url + "/other"):
            pass
    assert info.value.response.status_code == 404


async def test_port_in_use_is_a_serve_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        await stop_server(await start_server())
        from livesight.config import ServerConfig
        from livesight.protocols.web.server import WebServer

        with pytest.raises(ServeError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: address already in use$"):
            await WebServer(pipeline().service, ServerConfig(host="127.0.0.1", port=port)).start()


async def test_close_sends_going_away(running: Running) -> None:
    async with connect(running.url) as ws:
        await hello(ws)
        await running.server.close()
        with pytest.raises(ConnectionClosed) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_a_client_that_never_reads_is_dropped_while_others_keep_up() -> None:
    """Overflow policy disconnect_client: the publisher never waits; the stalled client is closed and counted."""
    r = await start_server(client_queue=8, limits=ClientLimits(close_timeout_s=0.3))
    pipe = r.pipe
    blob = "x" * 16_000
    try:
        # max_queue=1: the stalled client's library stops reading the socket once one message is buffered,
        # so the kernel buffers fill and the server's writer blocks, as with a frozen browser tab
        # (no compression: the blob must really take space in the buffers).
        async with (
            connect(r.url, max_queue=1, compression=None, close_timeout=0.5) as stalled,
            connect(r.url, compression=None) as healthy,
        ):
            await hello(healthy)
            received = 0
            async with asyncio.timeout(20):
                while r.server.clients_dropped_slow == 0 and not any(
                    s.counters.dropped_slow for s in r.server.sessions.values()
                ):
                    pipe.publish(StatsSnapshot(1.0, {}, {"blob": blob}))
                    ev = await recv_json(healthy)  # the healthy client reads everything, one by one
                    assert ev["type"] == "stats"
                    received += 1
            pipe.scene("cam1", 7)
            ev, _ = await recv_until(healthy, lambda e: e["type"] == "scene.change")
            assert ev["scene"] == 7
            await eventually(lambda: r.server.clients_dropped_slow == 1, what="stalled client dropped")
            assert len(r.server.sessions) == 1  # only the healthy one is left
            assert received > 8
            _ = stalled
        _, _, body = await http_get(r.port, "/metrics")
        assert 'livesight_ws_clients_dropped_total{reason="send_queue"} 1.0' in body.decode()
    finally:
        await stop_server(r)


async def test_a_client_that_stops_answering_pings_is_dropped_and_counted() -> None:
    """A peer that completed the handshake and then went silent (reads nothing, answers no ping: a dead host, a
    frozen process) is failed after keepalive_s without a pong and counted with reason keepalive."""
    r = await start_server(limits=ClientLimits(keepalive_s=0.3, close_timeout_s=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", r.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{r.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")  # then it reads nothing more
        await eventually(lambda: len(r.server.sessions) == 1, what="session")
        await eventually(lambda: len(r.server.sessions) == 0, what="silent client dropped", within=10)
        _, _, body = await http_get(r.port, "/metrics")
        assert 'livesight_ws_clients_dropped_total{reason="keepalive"} 1.0' in body.decode()
    finally:
        writer.close()
        await stop_server(r)


async def test_page_assets_are_served_with_a_strict_policy(running: Running) -> None:
    status, headers, body = await http_get(running.port, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="app.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    status, headers, body = await http_get(running.port, "/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"WebSocket" in body
    status, headers, _ = await http_get(running.port, "/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")


async def test_subscription_overflow_closes_with_4000() -> None:
    """A burst larger than the client's buffer (here published without yielding) overflows its subscription."""
    r = await start_server(client_queue=8)
    try:
        async with connect(r.url) as ws:
            await hello(ws)
            for i in range(20):
                r.pipe.scene("cam1", i)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await recv_json(ws)
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "client too slow")
        await eventually(lambda: r.server.clients_dropped_slow == 1, what="counted")
        _, _, body = await http_get(r.port, "/metrics")
        assert 'livesight_ws_clients_dropped_total{reason="subscription"} 1.0' in body.decode()
    finally:
        await stop_server(r)
