"""Who may reach what on the port: the Host, bearer token and Origin checks and the client limit, as ASGI middleware
around the routes (the daemon's web face and the fleet gateway share it).

    app = AccessMiddleware(router, gate=Gatekeeper(cfg), rules=[Rule("/metrics", token=True), ...],
                           ws_paths=("/", "/ws"), ws_rule=Rule("/", origin=True, token=True))

Checks, in order (docs/security.md):
- **malformed** (400): more than one Host header, a query string over MAX_QUERY_BYTES or with more than
  MAX_QUERY_FIELDS parameters (the HTTP parser and transport.py already answer a broken request line, headers, or a
  head over 16 KiB with 400/431).
- **Host** (DNS rebinding): without `server.auth_token`, only loopback Host values are served (127.0.0.1, localhost,
  [::1], any port), every path, HTTP and WebSocket alike; any other Host (or none) is answered 421 Misdirected
  Request. A web page that rebinds its own name to 127.0.0.1 sends its own name as Host: refused. With a token the
  port may be reached by any name (a LAN address, a reverse proxy): the token is what a rebinding page lacks.
- **method**: outside the prefixes listed in `any_method`, only GET is served (405 with `Allow: GET`).
- per path, the first `Rule` whose prefix it starts with: **Origin** (403), then the **token** (401); the rule says
  how a refusal is written (plain text by default; the OpenAI API answers with its own JSON errors).
- **clients** (`server.max_clients`): WebSocket connections and requests under a rule with `counted=True` (the
  OpenAI API, whose answers stream) take one slot each for as long as they last; when none is free the answer is 503
  with `Retry-After` (a WebSocket handshake gets it as a plain HTTP answer, before it is accepted).

WebSocket handshakes are checked before they are accepted: a path other than `ws_paths` is 404, then Host (421),
Origin (403), token (401), clients (503), each answered as plain HTTP (the handshake never completes). Every HTTP
answer closes its connection (one request per connection). Refusals are counted by reason (`Gatekeeper.refused`).
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livesight.config import ServerConfig
from livesight.protocols.web.responses import text_response

log = logging.getLogger(__name__)

MAX_QUERY_FIELDS = 64  # query parameters of one request; more → 400
MAX_QUERY_BYTES = 4096  # a longer query string → 400 (the whole request head is bounded in transport.py)
AUTHORIZED = "livesight.authorized"  # scope["state"][AUTHORIZED]: the request carried the right token
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})  # "::1": unbracketed, as some clients write it
RETRY_AFTER_S = "5"  # what a client refused for want of a slot is told to wait


def query_params(scope: Scope) -> dict[str, str]:
    """The first value of each query parameter (at most MAX_QUERY_FIELDS are read; the middleware refuses more)."""
    qs = scope.get("query_string", b"").decode("latin-1")
    out: dict[str, str] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True, max_num_fields=None)[:MAX_QUERY_FIELDS]:
        out.setdefault(k, v)
    return out


def bad_request(scope: Scope) -> str | None:
    """Why a request is malformed beyond what the HTTP parser checks (answered 400), or None: more than one Host
    header, a query string over MAX_QUERY_BYTES or with more than MAX_QUERY_FIELDS parameters."""
    if sum(1 for k, _ in scope.get("headers", ()) if k.lower() == b"host") > 1:
        return "more than one Host header"
    qs: bytes = scope.get("query_string", b"")
    if len(qs) > MAX_QUERY_BYTES:
        return f"query string longer than {MAX_QUERY_BYTES} bytes"
    if qs.count(b"&") >= MAX_QUERY_FIELDS:
        return f"more than {MAX_QUERY_FIELDS} query parameters"
    return None


def host_name(host: str) -> str:
    """The name part of a Host header value, lower case: "LocalHost:8765" → "localhost", "[::1]:80" → "[::1]"."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Gatekeeper:
    """Host, bearer-token and Origin checks (the token compared in constant time: no information about it leaks), the
    client slots (server.max_clients) and the refusals counted by reason."""

    def __init__(self, cfg: ServerConfig) -> None:
        self._token = cfg.token.encode() if cfg.token else None
        self._origins = None if cfg.allowed_origins is None else {o.rstrip("/") for o in cfg.allowed_origins}
        self.max_clients = cfg.max_clients
        self.clients = 0  # slots taken: WebSocket connections and counted requests in flight
        self.refused: Counter[str] = Counter()  # reason (malformed|host|method|origin|token|clients) → refusals

    def host_allowed(self, headers: Mapping[str, str]) -> bool:
        """With a token: any Host. Without: a loopback name only (DNS rebinding; docs/security.md)."""
        if self._token is not None:
            return True
        return host_name(headers.get("host", "")) in LOOPBACK_HOSTS

    def take_slot(self) -> bool:
        if self.clients >= self.max_clients:
            return False
        self.clients += 1
        return True

    def give_slot(self) -> None:
        self.clients -= 1

    @property
    def same_origin_only(self) -> bool:
        return self._origins is None

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if self._token is None:
            return True
        given: str | None = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query.get("token"):
            given = query["token"]
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def origin_allowed(self, headers: Mapping[str, str]) -> bool:
        """No Origin header (a non-browser client): allowed. Otherwise the configured list, or by default the
        same host and port the request was sent to."""
        origin = headers.get("origin")
        if origin is None:
            return True
        origin = origin.rstrip("/")
        if self._origins is not None:
            return "*" in self._origins or origin in self._origins
        host = headers.get("host", "")
        o = urlsplit(origin)
        return bool(host) and o.scheme in ("http", "https") and o.netloc.lower() == host.lower()


# ---- refusals -------------------------------------------------------------------------------------------------


STATUS = {"host": 421, "origin": 403, "token": 401, "clients": 503}


def text_refusal(status: int, reason: str) -> Response:
    """The port's plain-text refusals (`reason`: "host" | "origin" | "token" | "clients" | "path")."""
    if reason == "token":
        return text_response(401, "missing or wrong bearer token\n", {"WWW-Authenticate": 'Bearer realm="livesight"'})
    if reason == "origin":
        return text_response(403, "origin not allowed\n")
    if reason == "host":
        return text_response(
            421, "this server answers to localhost only (set server.auth_token to serve other names)\n"
        )
    if reason == "clients":
        return text_response(503, "too many clients (server.max_clients)\n", {"Retry-After": RETRY_AFTER_S})
    return text_response(status, "not found\n")


Refusal = Callable[[int, str], Response | Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Rule:
    prefix: str  # path prefix ("/api/"), or an exact path without a trailing slash ("/metrics")
    origin: bool = False  # the Origin check applies
    token: bool = False  # the bearer token is required
    counted: bool = False  # a request takes one of server.max_clients' slots while it is served (streamed answers)
    refuse: Refusal = field(default=text_refusal)

    def matches(self, path: str) -> bool:
        return path.startswith(self.prefix) if self.prefix.endswith("/") else path == self.prefix


class AccessMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Gatekeeper,
        rules: list[Rule],
        ws_paths: tuple[str, ...],
        ws_rule: Rule,
        any_method: tuple[str, ...] = (),
        server_header: str = "livesight",
    ) -> None:
        self.app = app
        self.gate = gate
        self.rules = rules
        self.ws_paths = ws_paths
        self.ws_rule = ws_rule
        self.any_method = any_method
        self.server_header = server_header  # on refused handshakes too (uvicorn adds it to the other answers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _closing(send)
        path = scope["path"]
        method = scope["method"]
        headers = Headers(scope=scope)
        malformed = bad_request(scope)
        if malformed is not None:
            self.gate.refused["malformed"] += 1
            await text_response(400, f"bad request: {malformed}\n")(scope, receive, send)
            return
        if not self.gate.host_allowed(headers):
            self.gate.refused["host"] += 1
            await text_refusal(421, "host")(scope, receive, send)
            return
        if method != "GET" and not path.startswith(self.any_method):
            self.gate.refused["method"] += 1
            await text_response(405, f"method {method[:32]} not allowed\n", {"Allow": "GET"})(scope, receive, send)
            return
        query = query_params(scope)
        authorized = self.gate.authorized(headers, query)
        scope.setdefault("state", {})[AUTHORIZED] = authorized
        rule = next((r for r in self.rules if r.matches(path)), None)
        if rule is None:
            await self.app(scope, receive, send)
            return
        why = self._refused(rule, headers, authorized)
        if why is None and rule.counted and not self.gate.take_slot():
            why = "clients"
        if why is not None:
            self.gate.refused[why] += 1
            response = rule.refuse(STATUS[why], why)
            if not isinstance(response, Response):
                response = await response
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if rule.counted:
                self.gate.give_slot()

    def _refused(self, rule: Rule, headers: Headers, authorized: bool) -> str | None:
        if rule.origin and not self.gate.origin_allowed(headers):
            return "origin"
        if rule.token and not authorized:
            return "token"
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        headers = Headers(scope=scope)
        refusal: Response | None = None
        malformed = bad_request(scope)
        if path not in self.ws_paths:
            refusal = text_response(404, f"no WebSocket endpoint at {path[:200]} (use /)\n")
        elif malformed is not None:
            self.gate.refused["malformed"] += 1
            refusal = text_response(400, f"bad request: {malformed}\n")
        else:
            why: str | None = "host" if not self.gate.host_allowed(headers) else None
            if why is None:
                why = self._refused(self.ws_rule, headers, self.gate.authorized(headers, query_params(scope)))
            if why is None and not self.gate.take_slot():
                why = "clients"
            if why is not None:
                self.gate.refused[why] += 1
                n = self.gate.refused[why]
                if why in ("origin", "host", "clients") and (n <= 3 or n % 1000 == 0):  # a flood is not a log flood
                    log.warning("refused WebSocket (%s, %d so far) %r", why, n, headers.get(why, "")[:200])
                refusal = text_refusal(STATUS[why], why)
        if refusal is None:
            try:
                await self.app(scope, receive, send)
            finally:
                self.gate.give_slot()
            return
        refusal.headers["server"] = self.server_header
        await _deny_websocket(refusal, scope, receive, send)


async def _deny_websocket(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a WebSocket handshake with a plain HTTP response (ASGI's websocket.http.response extension)."""
    if "websocket.http.response" not in scope.get("extensions", {}):  # pragma: no cover - uvicorn has it
        await send({"type": "websocket.close", "code": 1008})
        return
    await response(scope, receive, send)  # Starlette sends it as websocket.http.response.* in a websocket scope


def _closing(send: Send) -> Send:
    """Every HTTP answer says `Connection: close` (uvicorn then closes after it): one request per connection."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return wrapped


def request_is_authorized(scope: Scope) -> bool:
    return bool(scope.get("state", {}).get(AUTHORIZED, False))
