"""The OpenAI-compatible endpoints on the WebSocket port (requests diverted by http_divert.py).

    GET  /v1/models                  one model per camera, `livesight/<camera>`
    GET  /v1/models/<model>
    POST /v1/chat/completions        stream false → one JSON object; stream true → server-sent events

Same bearer token and origin rules as the rest of the port (http_routes.Gatekeeper), same question limits
(openai_api.py), at most `max_concurrent` completions at once (more → 429), the request read within
`read_timeout_s`. A client that disconnects cancels its answer. Mapping and error objects: openai_api.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from livesight.contract.api import ServiceAPI
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseStatus
from livesight.web import openai_api as oa
from livesight.web.http_divert import HttpError, HttpRequest, head_bytes, read_request, take_over, whole_response
from livesight.web.http_routes import Gatekeeper, parse_request

log = logging.getLogger(__name__)

PREFIX = "/v1/"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class OpenAICounters:
    requests: int = 0
    completions: int = 0
    refused: int = 0  # answered with an error status
    disconnected: int = 0  # clients gone before their answer ended


class OpenAIHTTP:
    def __init__(
        self,
        service: ServiceAPI,
        gate: Gatekeeper,
        *,
        max_body: int,
        max_concurrent: int = 8,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.service = service
        self.gate = gate
        self.max_body = max_body
        self.max_concurrent = max_concurrent
        self.read_timeout_s = read_timeout_s
        self.counters = OpenAICounters()
        self.created = oa.now()
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)

    # ---- connections ---------------------------------------------------------------------------------------

    def divert(self, transport: asyncio.Transport, buffered: bytes) -> None:
        """http_divert's callback: serve this connection in a named, tracked task."""
        reader, writer = take_over(transport, buffered)
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer), name=f"http:v1:{next(self._ids)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel every connection in progress (their answers are cancelled) and wait for them."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.requests += 1
        try:
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    req = await read_request(reader, writer, max_body=self.max_body)
            except HttpError as e:
                await self._send_error(writer, oa.OpenAIError(e.status, e.message))
                return
            except TimeoutError:
                await self._send_error(writer, oa.OpenAIError(408, "the request was not received in time"))
                return
            try:
                await self._route(req, reader, writer)
            except oa.OpenAIError as e:
                await self._send_error(writer, e)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.counters.disconnected += 1
        except Exception:  # one bad request must not take anything else down
            log.exception("OpenAI endpoint: request failed")
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send_error(writer, oa.server_error("internal error"))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()

    async def _send_error(self, writer: asyncio.StreamWriter, err: oa.OpenAIError) -> None:
        self.counters.refused += 1
        extra = {"WWW-Authenticate": 'Bearer realm="livesight"'} if err.status == 401 else None
        writer.write(whole_response(err.status, json.dumps(err.body()).encode(), "application/json", extra))
        await writer.drain()

    async def _send_json(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(whole_response(200, json.dumps(obj, ensure_ascii=False).encode(), "application/json"))
        await writer.drain()

    # ---- routes --------------------------------------------------------------------------------------------

    async def _route(self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws_req = req.as_ws_request()
        info = parse_request(ws_req)
        if not self.gate.origin_allowed(ws_req):
            raise oa.OpenAIError(403, "origin not allowed", code="origin_not_allowed")
        if not self.gate.authorized(ws_req, info):
            raise oa.unauthorized()
        path = info.path
        cameras = self.service.camera_ids()
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if req.method != "GET":
                raise oa.method_not_allowed(req.method, path)
            if path == "/v1/models":
                await self._send_json(writer, oa.models_list(cameras, self.created))
            else:
                await self._send_json(
                    writer, oa.model_object(unquote(path[len("/v1/models/") :]), cameras, self.created)
                )
            return
        if path == "/v1/chat/completions":
            if req.method != "POST":
                raise oa.method_not_allowed(req.method, path)
            chat = oa.parse_chat_request(req.body, cameras)
            await self._chat(chat, reader, writer)
            return
        raise oa.not_found(path)

    async def _chat(self, chat: oa.ChatRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= self.max_concurrent:
            raise oa.busy(f"{self._active} completions running (at most {self.max_concurrent}); retry shortly")
        self._active += 1
        self.counters.completions += 1
        try:
            answer = asyncio.create_task(self._answer(chat, writer), name="http:v1:answer")
            gone = asyncio.create_task(_until_eof(reader), name="http:v1:watch-disconnect")
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

    async def _answer(self, chat: oa.ChatRequest, writer: asyncio.StreamWriter) -> None:
        created = oa.now()
        cid = ""
        parts: list[str] = []
        done: ResponseDone | None = None
        started = False  # stream: the 200 head went out
        stopped_at_limit = False
        events = oa.ask(self.service, chat.camera, chat.question)
        try:
            async for item in events:
                if isinstance(item, ResponseCreated):
                    cid = oa.completion_id(item.response_id)
                    if chat.stream:
                        started = True
                        first = oa.chunk(cid, chat.model, created, {"role": "assistant", "content": ""})
                        writer.write(head_bytes(200, _SSE_HEADERS) + oa.sse(first))
                        await writer.drain()
                elif isinstance(item, ResponseDelta):
                    if stopped_at_limit:
                        continue
                    parts.append(item.text)
                    if chat.stream:
                        writer.write(oa.sse(oa.chunk(cid, chat.model, created, {"content": item.text})))
                        await writer.drain()
                    if chat.max_tokens is not None and len(parts) >= chat.max_tokens:
                        stopped_at_limit = True
                        oa.stop(self.service, item.response_id)
                elif isinstance(item, ResponseDone):
                    done = item
                    break
        except oa.OpenAIError as e:
            if not started:
                raise
            writer.write(oa.sse(e.body()) + oa.SSE_DONE)
            await writer.drain()
            return
        finally:
            await events.aclose()
        if done is None:
            err = oa.server_error("the answer ended without a result")
        elif done.status is ResponseStatus.FAILED:
            err = oa.server_error(f"the answer failed: {done.error or 'unknown error'}")
        elif done.status is ResponseStatus.CANCELLED and not stopped_at_limit:
            err = oa.OpenAIError(503, "the answer was cancelled (the daemon is stopping)", type="server_error")
        else:
            err = None
        if err is not None:
            if not started:
                raise err
            writer.write(oa.sse(err.body()) + oa.SSE_DONE)
            await writer.drain()
            return
        assert done is not None
        text = "".join(parts) if stopped_at_limit or parts else done.text
        completion_tokens = len(parts) if stopped_at_limit else done.completion_tokens
        use = oa.usage(done.prompt_tokens, completion_tokens)
        finish = "length" if stopped_at_limit else "stop"
        if not chat.stream:
            await self._send_json(writer, oa.completion(cid, chat.model, created, text, use, finish))
            return
        out = oa.sse(oa.chunk(cid, chat.model, created, {}, finish))
        if chat.include_usage:
            out += oa.sse(oa.usage_chunk(cid, chat.model, created, use))
        writer.write(out + oa.SSE_DONE)
        await writer.drain()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Return when the client closes its side (anything it sends after the request is ignored)."""
    while await reader.read(4096):
        pass
