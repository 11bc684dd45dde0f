"""Plain HTTP/1.1 requests with a body (and streamed responses) on the WebSocket port.

websockets' HTTP parser takes only bodiless requests (`Request.parse` refuses any `Content-Length` other than 0 with
"unsupported request body", and `Transfer-Encoding` with NotImplementedError) and `process_request` answers with one
whole `Response`. So a POST with a JSON body and a server-sent-events answer (the OpenAI API) cannot go through it.

`DivertingConnection` is websockets' own server connection (passed as `serve(create_connection=…)`, the documented
way to customise it) that first reads the request line: when the path starts with one of the diverted prefixes
(`/v1/`), it hands the TCP transport with the bytes read so far to our handler and websockets never sees it;
anything else goes on exactly as before (handshake, `process_request`). The request line must arrive within
`sniff_timeout_s`, or the connection is aborted.

`read_request` / `write_head` are a minimal, bounded HTTP/1.1 server side for those diverted requests: one request
per connection (`Connection: close`), bodies by `Content-Length` only, head ≤ MAX_HEAD bytes, ≤ MAX_HEADERS headers.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_REQUEST_LINE = 8 * 1024

# A diverted connection: (transport, bytes already read) → the handler takes it over.
Divert = Callable[[asyncio.Transport, bytes], None]


class DivertingConnection(ServerConnection):
    """A websockets server connection that hands requests for `prefixes` over to `divert` before websockets
    parses them. Build it with `diverting_factory(...)`."""

    def __init__(
        self, *args: Any, divert: Divert, prefixes: tuple[bytes, ...], sniff_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._divert = divert
        self._prefixes = prefixes
        self._sniff_timeout_s = sniff_timeout_s
        self._sniff: bytearray | None = bytearray()  # None once decided
        self._pending: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._websockets = False  # True once websockets has the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._pending = transport
        self._timer = self.loop.call_later(self._sniff_timeout_s, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._sniff is None:
            super().data_received(data)
            return
        self._sniff += data
        end = self._sniff.find(b"\n")
        if end < 0 and len(self._sniff) <= MAX_REQUEST_LINE:
            return  # the request line is not complete yet
        parts = bytes(self._sniff[: max(end, 0)]).split(b" ")
        buffered = bytes(self._sniff)
        self._sniff = None
        self._cancel_timer()
        transport = self._pending
        self._pending = None
        assert transport is not None
        if len(parts) == 3 and parts[1].startswith(self._prefixes):
            self._divert(transport, buffered)
            return
        self._websockets = True
        super().connection_made(transport)  # websockets takes it from here, with what was read
        super().data_received(buffered)

    def eof_received(self) -> bool | None:
        if self._sniff is None:
            return super().eof_received()
        return False  # closed before a request line: close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._websockets:
            super().connection_lost(exc)
            return
        self._cancel_timer()  # lost while sniffing: websockets never knew this connection
        self._sniff = None
        self._pending = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def diverting_factory(
    divert: Divert, prefixes: tuple[str, ...], *, sniff_timeout_s: float = 10.0
) -> Callable[..., ServerConnection]:
    """The `create_connection` argument of websockets' `serve`."""
    pre = tuple(p.encode() for p in prefixes)

    def factory(*args: Any, **kwargs: Any) -> ServerConnection:
        return DivertingConnection(*args, divert=divert, prefixes=pre, sniff_timeout_s=sniff_timeout_s, **kwargs)

    return factory


def take_over(transport: asyncio.Transport, buffered: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Give a diverted transport asyncio stream objects (the bytes already read come first)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEAD, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if buffered:
        protocol.data_received(buffered)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


# ---- a minimal HTTP/1.1 server side ---------------------------------------------------------------------------


class HttpError(Exception):
    """The request cannot be read: answer `status` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # with the query string
    headers: Headers
    body: bytes

    def as_ws_request(self) -> Request:
        """The same request as a websockets `Request` (for the shared token/origin checks)."""
        return Request(self.path, self.headers)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_body: int) -> HttpRequest:
    """Read one request (head, then a `Content-Length` body of at most `max_body` bytes). Raises HttpError."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head larger than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "connection closed before the end of the request head") from None
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    line, *lines = text[:-4].split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].startswith("/"):
        raise HttpError(400, "malformed request line")
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} headers")
    headers = Headers()
    for h in lines:
        name, sep, value = h.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        headers[name] = value.strip()
    if "Transfer-Encoding" in headers:
        raise HttpError(411, "send the body with a Content-Length (no Transfer-Encoding)")
    lengths = set(headers.get_all("Content-Length"))
    if len(lengths) > 1:
        raise HttpError(400, "conflicting Content-Length headers")
    size = 0
    if lengths:
        raw = lengths.pop()
        if not raw.isdigit():
            raise HttpError(400, "bad Content-Length")
        size = int(raw)
    if size > max_body:
        raise HttpError(413, f"request body larger than {max_body} bytes")
    if size and headers.get("Expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        body = await reader.readexactly(size) if size else b""
    except asyncio.IncompleteReadError:
        raise HttpError(400, "connection closed before the end of the body") from None
    return HttpRequest(parts[0], parts[1], headers, body)


def head_bytes(status: int, headers: dict[str, str]) -> bytes:
    """Status line and headers; `Connection: close` always (one request per connection)."""
    st = http.HTTPStatus(status)
    out = [f"HTTP/1.1 {st.value} {st.phrase}", f"Date: {email.utils.formatdate(usegmt=True)}", "Server: livesight"]
    out += [f"{k}: {v}" for k, v in headers.items()]
    out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def whole_response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        **(extra or {}),
    }
    return head_bytes(status, headers) + body
