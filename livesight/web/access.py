"""Who may reach what on the port: the bearer token and Origin checks, as ASGI middleware around the routes.

    app = access_middleware(router, gate=Gatekeeper(cfg), rules=[Rule("/metrics", token=True), ...],
                            ws_paths=("/", "/ws"))

Each request is matched to the first `Rule` whose prefix it starts with; the rule says which checks apply and how a
refusal is written (plain text by default; the OpenAI API answers with its own JSON errors). WebSocket handshakes are
checked before they are accepted: a path other than `ws_paths` is 404, then Origin (403), then the token (401), each
answered as plain HTTP (the handshake never completes). Outside the prefixes listed in `any_method`, only GET is
served (405 with `Allow: GET`). Every HTTP answer closes its connection (one request per connection, as before).

A new check (e.g. the Host header against DNS rebinding) is one more method on Gatekeeper and one more field on Rule.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livesight.config import ServerConfig
from livesight.web.responses import text_response

log = logging.getLogger(__name__)

MAX_QUERY_FIELDS = 64  # query parameters read for the token; more are ignored (never an error)
AUTHORIZED = "livesight.authorized"  # scope["state"][AUTHORIZED]: the request carried the right token


def query_params(scope: Scope) -> dict[str, str]:
    """The first value of each query parameter (at most MAX_QUERY_FIELDS are read)."""
    qs = scope.get("query_string", b"").decode("latin-1")
    out: dict[str, str] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True, max_num_fields=None)[:MAX_QUERY_FIELDS]:
        out.setdefault(k, v)
    return out


class Gatekeeper:
    """Bearer-token and Origin checks (both in constant shape: no information about the token leaks)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self._token = cfg.auth_token.encode() if cfg.auth_token else None
        self._origins = None if cfg.allowed_origins is None else {o.rstrip("/") for o in cfg.allowed_origins}

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


def text_refusal(status: int, reason: str) -> Response:
    """The port's plain-text refusals (`reason`: "origin" | "token" | "method" | "path")."""
    if reason == "token":
        return text_response(401, "missing or wrong bearer token\n", {"WWW-Authenticate": 'Bearer realm="livesight"'})
    if reason == "origin":
        return text_response(403, "origin not allowed\n")
    return text_response(status, "not found\n")


Refusal = Callable[[int, str], Response | Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Rule:
    prefix: str  # path prefix ("/api/"), or an exact path without a trailing slash ("/metrics")
    origin: bool = False  # the Origin check applies
    token: bool = False  # the bearer token is required
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
        if method != "GET" and not path.startswith(self.any_method):
            await text_response(405, f"method {method} not allowed\n", {"Allow": "GET"})(scope, receive, send)
            return
        headers = Headers(scope=scope)
        query = query_params(scope)
        authorized = self.gate.authorized(headers, query)
        scope.setdefault("state", {})[AUTHORIZED] = authorized
        rule = next((r for r in self.rules if r.matches(path)), None)
        if rule is not None:
            why = self._refused(rule, headers, authorized)
            if why is not None:
                status = 403 if why == "origin" else 401
                response = rule.refuse(status, why)
                if not isinstance(response, Response):
                    response = await response
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

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
        if path not in self.ws_paths:
            refusal = text_response(404, f"no WebSocket endpoint at {path} (use /)\n")
        else:
            why = self._refused(self.ws_rule, headers, self.gate.authorized(headers, query_params(scope)))
            if why == "origin":
                log.warning("refused WebSocket from origin %r", headers.get("origin"))
            if why is not None:
                refusal = text_refusal(403 if why == "origin" else 401, why)
        if refusal is None:
            await self.app(scope, receive, send)
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
