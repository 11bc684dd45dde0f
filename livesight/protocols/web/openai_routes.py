"""The OpenAI-compatible endpoints on the port (an ASGI app for every path under `/v1/`).

    GET  /v1/models                  one model per camera, `livesight/<camera>`
    GET  /v1/models/<model>
    POST /v1/chat/completions        stream false → one JSON object; stream true → server-sent events

Same bearer token and origin rules as the rest of the port (server.py's access rule for /v1/, refused with
`refuse`, in OpenAI's error shape), same question limits (openai_api.py), at most `max_concurrent` completions at once
(more → 429), the request body (≤ max_body bytes, else 413) read within `read_timeout_s` (else 408). A client that
disconnects cancels its answer. Mapping and error objects: openai_api.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope, Send

from livesight.protocols.contract.api import ServiceAPI
from livesight.protocols.web import openai_api as oa
from livesight.protocols.web.access import RETRY_AFTER_S
from livesight.protocols.web.responses import response
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseStatus

log = logging.getLogger(__name__)

PREFIX = "/v1/"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]


@dataclass
class OpenAICounters:
    requests: int = 0
    completions: int = 0
    refused: int = 0  # answered with an error status
    disconnected: int = 0  # clients gone before their answer ended


class _Stream:
    """The ASGI `send` of one answer: knows whether the head and the end went out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False

    async def head(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def body(self, data: bytes, *, more: bool = True) -> None:
        if not more:
            self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": more})


class OpenAIRoutes:
    def __init__(
        self,
        service: ServiceAPI,
        *,
        max_body: int,
        max_concurrent: int = 8,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.service = service
        self.max_body = max_body
        self.max_concurrent = max_concurrent
        self.read_timeout_s = read_timeout_s
        self.counters = OpenAICounters()
        self.created = oa.now()
        self._active = 0

    # ---- the access rule's refusals -------------------------------------------------------------------------

    def refuse(self, status: int, why: str) -> Any:
        self.counters.requests += 1
        if why == "origin":
            return self._error_response(oa.OpenAIError(403, "origin not allowed", code="origin_not_allowed"))
        if why == "clients":
            err = oa.OpenAIError(
                503, "too many clients (server.max_clients); retry later", type="server_error", code="too_many_clients"
            )
            return self._error_response(err, {"Retry-After": RETRY_AFTER_S})
        return self._error_response(oa.unauthorized())

    def _error_response(self, err: oa.OpenAIError, headers: dict[str, str] | None = None) -> Any:
        self.counters.refused += 1
        extra = {"WWW-Authenticate": 'Bearer realm="livesight"'} if err.status == 401 else {}
        return response(err.status, json.dumps(err.body()).encode(), "application/json", {**extra, **(headers or {})})

    # ---- ASGI ---------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.counters.requests += 1
        try:
            await self._route(scope, receive, send)
        except oa.OpenAIError as e:
            await self._error_response(e)(scope, receive, send)
        except OSError:
            self.counters.disconnected += 1

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        cameras = self.service.camera_ids()
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                raise oa.method_not_allowed(method, path)
            if path == "/v1/models":
                obj = oa.models_list(cameras, self.created)
            else:
                obj = oa.model_object(unquote(path[len("/v1/models/") :]), cameras, self.created)
            await _json(obj)(scope, receive, send)
            return
        if path == "/v1/chat/completions":
            if method != "POST":
                raise oa.method_not_allowed(method, path)
            body = await self._read_body(scope, receive)
            chat = oa.parse_chat_request(body, cameras)
            await self._chat(chat, scope, receive, send)
            return
        raise oa.not_found(path)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise oa.OpenAIError(413, f"request body larger than {self.max_body} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        raise ConnectionResetError("the client went away before the end of its request")
                    body += msg.get("body", b"")
                    if len(body) > self.max_body:
                        raise oa.OpenAIError(413, f"request body larger than {self.max_body} bytes")
                    if not msg.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            raise oa.OpenAIError(408, "the request was not received in time") from None

    async def _chat(self, chat: oa.ChatRequest, scope: Scope, receive: Receive, send: Send) -> None:
        if self._active >= self.max_concurrent:
            raise oa.busy(f"{self._active} completions running (at most {self.max_concurrent}); retry shortly")
        self._active += 1
        self.counters.completions += 1
        out = _Stream(send)
        try:
            answer = asyncio.create_task(self._answer(chat, scope, receive, out), name="http:v1:answer")
            gone = asyncio.create_task(_until_disconnect(receive, out), name="http:v1:watch-disconnect")
            try:
                await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not answer.done():  # the client went away (or we are stopping): cancel the answer
                    self.counters.disconnected += 1
                    answer.cancel()
                gone.cancel()
                await asyncio.gather(gone, return_exceptions=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await answer
        finally:
            self._active -= 1

    async def _answer(self, chat: oa.ChatRequest, scope: Scope, receive: Receive, out: _Stream) -> None:
        try:
            await self._generate(chat, out)
        except oa.OpenAIError as e:
            if out.started:
                await out.body(oa.sse(e.body()) + oa.SSE_DONE, more=False)
                return
            self.counters.refused += 1
            extra = {"WWW-Authenticate": 'Bearer realm="livesight"'} if e.status == 401 else None
            await response(e.status, json.dumps(e.body()).encode(), "application/json", extra)(
                scope, receive, out._send
            )

    async def _generate(self, chat: oa.ChatRequest, out: _Stream) -> None:
        created = oa.now()
        cid = ""
        parts: list[str] = []
        done: ResponseDone | None = None
        stopped_at_limit = False
        events = oa.ask(self.service, chat.camera, chat.question)
        try:
            async for item in events:
                if isinstance(item, ResponseCreated):
                    cid = oa.completion_id(item.response_id)
                    if chat.stream:
                        await out.head(_SSE_HEADERS)
                        await out.body(oa.sse(oa.chunk(cid, chat.model, created, {"role": "assistant", "content": ""})))
                elif isinstance(item, ResponseDelta):
                    if stopped_at_limit:
                        continue
                    parts.append(item.text)
                    if chat.stream:
                        await out.body(oa.sse(oa.chunk(cid, chat.model, created, {"content": item.text})))
                    if chat.max_tokens is not None and len(parts) >= chat.max_tokens:
                        stopped_at_limit = True
                        oa.stop(self.service, item.response_id)
                elif isinstance(item, ResponseDone):
                    done = item
                    break
        finally:
            await events.aclose()
        if done is None:
            raise oa.server_error("the answer ended without a result")
        if done.status is ResponseStatus.FAILED:
            if done.code == "camera_unavailable":  # the fleet gateway: the camera's node went away mid-answer
                raise oa.camera_unavailable(f"the answer failed: {done.error or 'the node went away'}")
            raise oa.server_error(f"the answer failed: {done.error or 'unknown error'}")
        if done.status is ResponseStatus.CANCELLED and not stopped_at_limit:
            raise oa.OpenAIError(503, "the answer was cancelled (the daemon is stopping)", type="server_error")
        text = "".join(parts) if stopped_at_limit or parts else done.text
        completion_tokens = len(parts) if stopped_at_limit else done.completion_tokens
        use = oa.usage(done.prompt_tokens, completion_tokens)
        finish = "length" if stopped_at_limit else "stop"
        cites = oa.citations_of(done.citations)
        if not chat.stream:
            reply = oa.completion(cid, chat.model, created, text, use, finish, cites)
            body = json.dumps(reply, ensure_ascii=False).encode()
            await out.head([(b"content-type", b"application/json"), *_plain_headers(len(body))])
            await out.body(body, more=False)
            return
        end = oa.sse(oa.chunk(cid, chat.model, created, {}, finish, cites))
        if chat.include_usage:
            end += oa.sse(oa.usage_chunk(cid, chat.model, created, use))
        await out.body(end + oa.SSE_DONE, more=False)


def _plain_headers(length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-length", str(length).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]


def _json(obj: dict[str, Any]) -> Any:
    return response(200, json.dumps(obj, ensure_ascii=False).encode(), "application/json")


async def _until_disconnect(receive: Receive, out: _Stream) -> None:
    """Return when the client goes away before its answer ended (anything it sends after the request is ignored)."""
    while True:
        msg: Message = await receive()
        if msg["type"] == "http.disconnect":
            if not out.finished:
                return
            await asyncio.Event().wait()  # the answer is complete: nothing to watch, wait to be cancelled
