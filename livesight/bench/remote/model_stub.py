"""A small OpenAI-compatible HTTP server for failure tests and the outage part of `livesight bench remote`: real
HTTP/1.1 on a loopback port (asyncio streams), each chat request answered by the next scripted behaviour (the last
one repeats).

    async with StubServer([Status(500), Status(429, headers={"Retry-After": "2"}), Reply("a red car")]) as srv:
        srv.base_url              # http://127.0.0.1:PORT/v1
        srv.requests              # parsed JSON bodies of the chat requests, in order

Like Ollama it takes images only as `data:` URLs (anything else: 400), and like a strict server (transformers serve)
it answers 422 to request fields outside the OpenAI chat schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPENAI_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "response_format",
}


@dataclass
class Reply:
    """A streamed answer, word by word; `delay_s` before the first chunk (a server loading its model)."""

    text: str = "a red car"
    delay_s: float = 0.0
    word_delay_s: float = 0.0


@dataclass
class Status:
    code: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Accept the request, answer nothing for `seconds` (then a normal reply)."""

    seconds: float
    then: Reply = field(default_factory=Reply)


@dataclass
class Drop:
    """Close the connection without an answer."""


Behaviour = Reply | Status | Hang | Drop


class StubServer:
    def __init__(
        self,
        script: list[Behaviour] | None = None,
        *,
        port: int = 0,
        scripted: Callable[[dict[str, Any]], bool] = lambda req: True,
        answer: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.answer = answer  # the text of unscripted replies, by request (default: Reply's)
        self.script: list[Behaviour] = list(script or [Reply()])
        self.scripted = scripted  # which chat requests follow the script (the others get a plain Reply)
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.models_calls = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *behaviours: Behaviour) -> None:
        """Replace what comes next."""
        self.script = list(behaviours)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> StubServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _next(self) -> Behaviour:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "GET" and path.endswith("/models"):
                    self.models_calls += 1
                    await _send(writer, 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                    continue
                if method != "POST" or not path.endswith("/chat/completions"):
                    await _send(writer, 404, _error("not found"))
                    continue
                req = json.loads(body)
                self.requests.append(req)
                self.headers.append(headers)
                if not await self._answer(req, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # stop(): the connection ends here (asyncio's stream callback must not see it)
            return
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        unknown = set(req) - OPENAI_FIELDS
        if unknown:
            await _send(writer, 422, {"detail": f"unknown fields: {sorted(unknown)}"})
            return True
        for msg in req.get("messages", []):
            content = msg.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url" and not part["image_url"]["url"].startswith("data:image/"):
                    await _send(writer, 400, _error("images must be data: URLs"))
                    return True
        b = self._next() if self.scripted(req) else Reply(self.answer(req) if self.answer else Reply.text)
        if isinstance(b, Drop):
            return False
        if isinstance(b, Status):
            await _send(writer, b.code, _error(b.message), b.headers)
            return True
        if isinstance(b, Hang):
            await asyncio.sleep(b.seconds)
            b = b.then
        await asyncio.sleep(b.delay_s)
        await _stream(writer, b, req.get("model", "stub"))
        return True


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


async def _send(writer: asyncio.StreamWriter, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
    data = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()


async def _stream(writer: asyncio.StreamWriter, reply: Reply, model: str) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

    async def event(obj: Any) -> None:
        data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    await event(chunk({"role": "assistant", "content": ""}))
    words = reply.text.split()
    for i, w in enumerate(words):
        if reply.word_delay_s:
            await asyncio.sleep(reply.word_delay_s)
        await event(chunk({"content": w if i == 0 else " " + w}))
    await event(chunk({}, "stop"))
    usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
    await event({**chunk({}), "choices": [], "usage": usage})
    await event(b"[DONE]")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def last_text(req: dict[str, Any]) -> str:
    """The last text part of a chat request (the question, or the caption prompt)."""
    content = req["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return next((p["text"] for p in reversed(content) if p.get("type") == "text"), "")


def is_question(req: dict[str, Any]) -> bool:
    return last_text(req).startswith("Question:")
