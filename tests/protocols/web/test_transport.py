"""The bounds uvicorn does not have on its own (protocols/web/transport.py) and HTTP the hand-written parser got
wrong."""

from __future__ import annotations

import asyncio
import json

from tests.helpers import Running, http_get, parse_response, request_head


async def test_a_request_head_over_16k_is_431(running: Running) -> None:
    status, _, body = await http_get(running.port, "/healthz", {"X-Big": "a" * 20_000})
    assert status == 431 and b"too large" in body
    status, _, _ = await http_get(running.port, "/healthz", {f"X-H{i}": "1" for i in range(120)})
    assert status == 431
    status, _, _ = await http_get(running.port, "/healthz", {f"X-H{i}": "1" for i in range(50)})
    assert status == 200


async def test_many_query_parameters_are_no_error(running: Running) -> None:
    """40 query parameters used to be a 500 (parse_qs's field limit raised inside the route)."""
    query = "&".join(f"a{i}=1" for i in range(40))
    status, _, body = await http_get(running.port, f"/healthz?{query}")
    assert status == 200 and json.loads(body)["status"] == "ok"


async def test_a_chunked_body_is_bounded_like_any_other(running: Running) -> None:
    """A body without Content-Length (chunked) is read, and refused with 413 once it passes the limit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    head = request_head(running.port, "POST", "/v1/chat/completions", {"Transfer-Encoding": "chunked"})
    chunk = b"x" * 40_000
    writer.write(head + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status, _, body = parse_response(data)
    assert status == 413 and json.loads(body)["error"]["type"] == "invalid_request_error"
