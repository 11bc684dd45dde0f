"""Bad HTTP input gets a 4xx, never a traceback: hypothesis throws requests at every route of the daemon's port and
the gateway's (methods, paths with traversal and odd bytes, query strings of any size, headers, bodies, WebSocket
upgrades) and checks that every answer is a status below 500 and that no ERROR line was logged.

The servers run on their own event loop in a thread (hypothesis drives plain sockets from the test's thread); each
request is one raw HTTP/1.1 connection, read up to the end of the answer's head."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livesight.config import ServerConfig
from livesight.daemon.frame_slots import FrameSlots
from livesight.daemon.images import Images, ThumbnailStore
from livesight.gateway.directory import Directory
from livesight.gateway.server import GatewayServer
from livesight.protocols.web.server import WebServer
from livesight.types import DTDStep, SceneChange
from tests.pipeline import pipeline

STATUSES: dict[int, int] = {}  # status → answers seen (printed with -s by the last test: is the fuzz reaching routes?)
TOKEN = "fuzz-token-1"
EXAMPLES = 250  # per server; ~10 s for both on 2 busy cores


class ServerThread:
    """An event loop in a thread that starts a server (an async factory returning (port, closer))."""

    def __init__(self, start: Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.thread.start()
        self.port, self._close = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def errors() -> Iterator[ErrorLines]:
    handler = ErrorLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def _daemon(thumbs: Path) -> tuple[int, Callable[[], Awaitable[None]]]:
    pipe = pipeline(["cam1", "cam2"]).start()
    slots = FrameSlots()
    images = Images(["cam1", "cam2"], slots, store=ThumbnailStore(thumbs, 10))
    await images.start()
    keep = np.array([True, False] * 3)
    step = DTDStep("cam1", 1.0, time.time(), (2, 3), keep, keep.astype(np.float32), False, 0.0, 0.0)
    change = SceneChange("cam1", 2, 1.0, time.time(), 4.0)
    slots.put(step, np.full((56, 84, 3), 120, np.uint8), change)
    images.save_scene(change)
    server = WebServer(pipe.service, ServerConfig(port=0, auth_token=TOKEN), images=images)
    port = await server.start()

    async def close() -> None:
        await server.close()
        await images.close()
        await pipe.stop()

    return port, close


async def _gateway() -> tuple[int, Callable[[], Awaitable[None]]]:
    gw = GatewayServer(Directory({"door": "a"}, nodes=["a"]), ServerConfig(port=0))
    return await gw.start(), gw.close


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, errors: ErrorLines) -> Iterator[int]:
    thumbs = tmp_path_factory.mktemp("thumbs")
    server = ServerThread(lambda: _daemon(thumbs))
    yield server.port
    server.stop()


@pytest.fixture(scope="module")
def gateway(errors: ErrorLines) -> Iterator[int]:
    server = ServerThread(_gateway)
    yield server.port
    server.stop()


# ---- requests ------------------------------------------------------------------------------------------------

ODD = ["cam1", "cam2", "door", "..", ".", "%2e%2e", "%2F", "%00", "%ff", "%", "%C3%A9", "1", "0", "-1", "x" * 300,
       "99999999999999999999", "latest.jpg", "scenes", "app.js", "index.html", "%5C..%5C", "a b", "?", "#"]  # fmt: skip
segment = st.one_of(
    st.sampled_from(ODD),
    st.text(max_size=24).map(lambda t: quote(t, safe="")),
    st.text(alphabet="abc./-_~:@!$&'()*+,;=", max_size=16),
)
ROUTES = [
    "/", "/{}", "/{}/{}", "/healthz", "/metrics", "/ws", "/api/cameras/{}/latest.jpg", "/api/cameras/{}/scenes",
    "/api/cameras/{}/scenes/{}.jpg", "/api/{}", "/api/cameras/{}/{}", "/v1/models", "/v1/models/{}",
    "/v1/chat/completions", "/v1/{}",
]  # fmt: skip
path = st.builds(
    lambda route, parts: route.format(*parts[: route.count("{}")]),
    st.sampled_from(ROUTES),
    st.lists(segment, min_size=2, max_size=2),
)
# digits that are not ASCII: "²" (str.isdigit() yet int() refuses it), "٣" and "１" (int() takes them)
ODD_VALUES = ["1", "0", "true", "-5", "100", "99999999999", "", "%", "%zz", TOKEN, "x" * 500, "%C2%B2", "%D9%A3",
              "%EF%BC%91", "1e3", "0x10", "+5", "5%20"]  # fmt: skip
query_value = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=30).map(lambda t: quote(t, safe="")))
query_pair = st.tuples(st.sampled_from(["overlay", "limit", "token", "x", "stream", "a[]", ""]) | segment, query_value)
query = st.one_of(
    st.lists(query_pair, max_size=4), st.lists(query_pair, max_size=4), st.lists(query_pair, min_size=30, max_size=80)
).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
header_value = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=120)
headers = st.dictionaries(
    st.sampled_from(
        [
            "Origin",
            "If-None-Match",
            "Content-Type",
            "Accept",
            "Cookie",
            "Range",
            "X-Forwarded-For",
            "Expect",
            "Accept-Encoding",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions",
            "X-Whatever",
        ]
    ),
    header_value,
    max_size=5,
)
auth = st.sampled_from([None, f"Bearer {TOKEN}", "Bearer wrong", "Basic dXNlcjpwYXNz", "bearer", "Bearer \xff"])
chat = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["cam1", "cam2", "door", "", "nope", None]) | st.integers(),
        "messages": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "role": st.sampled_from(["user", "system", "assistant", "tool", "x", None]),
                    "content": st.one_of(
                        st.text(max_size=40),
                        st.none(),
                        st.lists(
                            st.fixed_dictionaries(
                                {"type": st.sampled_from(["text", "image_url", "x"])},
                                optional={"text": st.text(max_size=10), "image_url": st.just({"url": "data:,"})},
                            ),
                            max_size=2,
                        ),
                    ),
                },
            ),
            max_size=3,
        ),
        "stream": st.booleans() | st.none() | st.just("yes"),
        "max_tokens": st.integers(-5, 10**12) | st.none(),
        "temperature": st.floats(allow_nan=True) | st.text(max_size=3),
        "stream_options": st.just({"include_usage": True}) | st.integers(),
    },
)
body = st.one_of(st.just(b""), st.binary(max_size=200), chat.map(lambda d: json.dumps(d).encode()))
# mostly the methods routes serve, so that most requests reach them; a few unknown ones (the parser answers 400)
method = st.sampled_from(
    ["GET"] * 10 + ["POST"] * 5 + ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "BREW", "get"]
)
request = st.fixed_dictionaries(
    {"method": method, "path": path, "query": query, "headers": headers, "auth": auth, "body": body},
    optional={"upgrade": st.booleans()},
)


def send(port: int, r: dict[str, Any]) -> int:
    """Send one request; return the status of the answer (the connection is closed after its head)."""
    target = r["path"] + (f"?{r['query']}" if r["query"] else "")
    lines = [f"{r['method']} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in r["headers"].items()]
    if r["auth"] is not None:
        lines.append(f"Authorization: {r['auth']}")
    if r.get("upgrade"):
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
        lines.append("Sec-WebSocket-Version: 13")
    data = r["body"] if r["method"] != "GET" else b""
    if data:
        lines.append(f"Content-Length: {len(data)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data
    head = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(raw)
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
    assert head.startswith(b"HTTP/1.1 "), f"no answer to {raw[:300]!r}: {head[:100]!r}"
    return int(head.split()[1])


def check(port: int, r: dict[str, Any], errors: ErrorLines) -> None:
    before = len(errors.records)
    status = send(port, r)
    STATUSES[status] = STATUSES.get(status, 0) + 1
    assert status < 500 or status == 503, r  # 503: busy (pictures, clients), never a failure
    new = errors.records[before:]
    assert not new, [f"{x.name}: {x.getMessage()}" for x in new]


# the findings of issue 20, always tried (hypothesis may not draw them in one run)
KNOWN = [
    # an image URL with 40 query parameters (a 500 and a traceback before the move to Starlette)
    {"method": "GET", "path": "/api/cameras/cam1/latest.jpg", "query": "&".join(f"p{i}=1" for i in range(40)),
     "headers": {}, "auth": f"Bearer {TOKEN}", "body": b""},
    # "²" passes str.isdigit() but not int(): a 500 on today's main
    {"method": "GET", "path": "/api/cameras/cam1/scenes", "query": "limit=%C2%B2", "headers": {},
     "auth": f"Bearer {TOKEN}", "body": b""},
    # traversal in picture paths
    {"method": "GET", "path": "/api/cameras/..%2F..%2Fetc/scenes/1.jpg", "query": "", "headers": {},
     "auth": f"Bearer {TOKEN}", "body": b""},
]  # fmt: skip


def _with_known(test: Callable[..., None]) -> Callable[..., None]:
    for r in KNOWN:
        test = example(r=r)(test)
    return test


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@_with_known
@given(request)
def test_every_daemon_route_answers_bad_input_with_a_4xx(daemon: int, errors: ErrorLines, r: dict[str, Any]) -> None:
    check(daemon, r, errors)


@FUZZ
@_with_known
@given(request)
def test_every_gateway_route_answers_bad_input_with_a_4xx(gateway: int, errors: ErrorLines, r: dict[str, Any]) -> None:
    check(gateway, r, errors)


def test_the_fuzz_reached_the_routes() -> None:
    """Not only the parser's 400s: a fair share of the requests got past it to the routes."""
    if not STATUSES:
        pytest.skip("the fuzz tests did not run")
    print(sorted(STATUSES.items()))
    routed = sum(n for status, n in STATUSES.items() if status not in (400, 405))
    assert routed > sum(STATUSES.values()) // 8, STATUSES


def test_a_thumbnail_carries_one_cache_control(daemon: int) -> None:
    """Issue 20: thumbnails were sent with both `no-store` and `max-age` (websockets' Headers appended a second one)."""
    with socket.create_connection(("127.0.0.1", daemon), timeout=10) as s:
        auth = f"Authorization: Bearer {TOKEN}"
        s.sendall(f"GET /api/cameras/cam1/scenes/2.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 200")
    assert [line for line in head.split("\r\n") if line.startswith("cache-control:")] == [
        "cache-control: private, max-age=3600"
    ]
