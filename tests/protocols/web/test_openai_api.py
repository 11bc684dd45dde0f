"""The OpenAI-compatible API: pure mapping on literal JSON, then the real server with the official `openai` client,
over the daemon's real Service and model worker (echo backend: tests/pipeline.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect

from livesight.config import ServerConfig
from livesight.protocols.web import openai_api as oa
from livesight.protocols.web.server import WebServer
from livesight.types import Citation
from tests.helpers import Running, eventually, http_get, http_post, recv_until, start_server, stop_server
from tests.pipeline import pipeline

CAMS = ["door", "yard"]
TOKEN = "s3cret-token"


# ---- pure mapping --------------------------------------------------------------------------------------------


def parse(obj: Any) -> oa.ChatRequest:
    return oa.parse_chat_request(json.dumps(obj).encode(), CAMS)


def refused(obj: Any) -> oa.OpenAIError:
    with pytest.raises(oa.OpenAIError) as e:
        oa.parse_chat_request(obj if isinstance(obj, bytes) else json.dumps(obj).encode(), CAMS)
    return e.value


def test_last_user_message_is_the_question() -> None:
    req = parse(
        {
            "model": "livesight/yard",
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "is the gate"}, {"type": "text", "text": "open?"}],
                },
            ],
            "temperature": 0.2,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 7,
        }
    )
    assert req == oa.ChatRequest("livesight/yard", "yard", "is the gate\nopen?", True, True, 7)
    assert parse({"model": "door", "messages": [{"role": "user", "content": " hi "}]}).question == "hi"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[]", 400, None),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
        ({"model": "livesight/door"}, 400, "messages"),
        ({"model": "livesight/door", "messages": []}, 400, "messages"),
        ({"model": "livesight/door", "messages": [{"role": "system", "content": "x"}]}, 400, "messages"),
        ({"model": "livesight/door", "messages": [{"role": "user", "content": "  "}]}, 400, "messages[0].content"),
        (
            {"model": "livesight/door", "messages": [{"role": "user", "content": "x" * 2001}]},
            400,
            "messages[0].content",
        ),
        (
            {"model": "livesight/door", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "messages[0].content[0]",
        ),
        ({"model": "livesight/door", "messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n"),
        (
            {"model": "livesight/door", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            400,
            "max_tokens",
        ),
        ({"model": "livesight/door", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
        (
            {"model": "livesight/door", "messages": [{"role": "user", "content": "x"}], "stream_options": {}},
            400,
            "stream_options",
        ),
        ({"model": "livesight/door", "messages": [{"role": "user", "content": "x"}], "bogus": 1}, 400, "bogus"),
        ({"model": "livesight/garage", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ],
)
def test_bad_requests_name_the_field(body: Any, status: int, param: str | None) -> None:
    err = refused(body)
    assert (err.status, err.param) == (status, param)
    e = err.body()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"]
    assert e["type"] == "invalid_request_error"
    if status == 404:
        assert e["code"] == "model_not_found"


def test_response_shapes() -> None:
    use = oa.usage(10, 3)
    assert use == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    c = oa.completion("chatcmpl-1", "livesight/door", 5, "hello", use, "stop")
    assert c["object"] == "chat.completion" and c["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello",
        "refusal": None,
    }
    assert c["citations"] == []  # nothing recalled into the answer
    ch = oa.chunk("chatcmpl-1", "livesight/door", 5, {"content": "he"})
    assert ch["object"] == "chat.completion.chunk" and ch["choices"][0]["finish_reason"] is None
    assert "citations" not in ch  # only the final chunk carries them
    cite = Citation("door", 3, "tl_1", 12.5, 1764946990.0, "/api/timeline/tl_1/keyframes/0.jpg")
    last = oa.chunk("chatcmpl-1", "livesight/door", 5, {}, "stop", oa.citations_of((cite,)))
    assert last["citations"] == [
        {
            "camera": "door",
            "scene": 3,
            "id": "tl_1",
            "pts": 12.5,
            "wall_time": 1764946990.0,
            "thumbnail": cite.thumbnail,
        },
    ]
    assert oa.sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert oa.models_list(CAMS, 1)["data"][1] == {
        "id": "livesight/yard",
        "object": "model",
        "created": 1,
        "owned_by": "livesight",
    }


# ---- the real server, the official client --------------------------------------------------------------------


def echoed(question: str) -> str:
    """The echo model's answer to a question, from a camera that has seen no frame yet."""
    return f"I hold 0 frames (0 visual tokens). You asked: {question}"


@pytest.fixture
async def served() -> AsyncIterator[Running]:
    pipe = pipeline(CAMS)
    pipe.backend.token_delay_s = 0.005  # the answer streams word by word, as a model's would
    r = await start_server(pipe, auth_token=TOKEN)
    try:
        yield r
    finally:
        await stop_server(r)


def client(r: Running, key: str = TOKEN) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{r.port}/v1", api_key=key, max_retries=0, timeout=10)


async def test_models_and_a_plain_completion(served: Running) -> None:
    async with client(served) as c:
        models = await c.models.list()
        assert [m.id for m in models.data] == ["livesight/door", "livesight/yard"]
        assert (await c.models.retrieve("livesight/yard")).id == "livesight/yard"
        out = await c.chat.completions.create(
            model="livesight/yard", messages=[{"role": "user", "content": "who is at the gate?"}]
        )
    assert out.object == "chat.completion" and out.model == "livesight/yard"
    answer = echoed("who is at the gate?")
    assert out.choices[0].message.content == answer
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 5 and out.usage.completion_tokens == len(answer.split())
    assert out.usage.total_tokens == 5 + len(answer.split())
    assert served.pipe.backend.asked == [("yard", "who is at the gate?")]


async def test_streaming_with_usage(served: Running) -> None:
    async with client(served) as c:
        stream = await c.chat.completions.create(
            model="livesight/door",
            messages=[{"role": "user", "content": "what moved"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [ch async for ch in stream]
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == echoed("what moved")
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) == len(text.split())  # streamed
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert served.pipe.backend.asked == [("door", "what moved")]


async def test_raw_sse_ends_with_done(served: Running) -> None:
    body = json.dumps({"model": "door", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    status, headers, raw = await http_post(served.port, "/v1/chat/completions", body, auth=TOKEN)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "stop" and "usage" not in last
    assert last["citations"] == []  # the final chunk: what was recalled into the answer (nothing here)


async def test_max_tokens_stops_the_answer(served: Running) -> None:
    pipe = served.pipe
    pipe.backend.token_delay_s = 0.05  # the whole answer would take a while: the stop must come from max_tokens
    question = "one two three four"
    async with client(served) as c:
        out = await c.chat.completions.create(
            model="livesight/door", messages=[{"role": "user", "content": question}], max_tokens=2
        )
    assert out.choices[0].message.content == "I hold"
    assert out.choices[0].finish_reason == "length" and out.usage is not None and out.usage.completion_tokens == 2
    # the model stopped generating (its answer was cancelled), long before the end of the answer
    await eventually(lambda: len(pipe.backend.results) == 1, what="generation ended")
    (result,) = pipe.backend.results
    assert result.stopped and result.completion_tokens < len(echoed(question).split())
    assert pipe.service.responses.active == 0


async def test_errors_through_the_client(served: Running) -> None:
    async with client(served, key="wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as e:
            await bad.models.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    async with client(served) as c:
        with pytest.raises(openai.NotFoundError) as nf:
            await c.chat.completions.create(model="livesight/garage", messages=[{"role": "user", "content": "x"}])
        assert nf.value.code == "model_not_found" and nf.value.param == "model"
        with pytest.raises(openai.BadRequestError) as br:
            await c.chat.completions.create(model="livesight/door", messages=[{"role": "assistant", "content": "x"}])
        assert br.value.param == "messages"
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="livesight/door", messages=[], stream=True)
    assert served.pipe.backend.asked == []


async def test_busy_is_429() -> None:
    r = await start_server(pipeline(CAMS, response_queue_size=0), auth_token=TOKEN)
    try:
        async with client(r) as c:
            with pytest.raises(openai.RateLimitError) as e:
                await c.chat.completions.create(model="door", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 429 and e.value.code == "rate_limit_exceeded"
        assert r.pipe.service.responses.refused == 1 and r.pipe.backend.asked == []
    finally:
        await stop_server(r)


async def test_raw_http_errors(served: Running) -> None:
    ok = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = await http_post(served.port, "/v1/chat/completions", b"{oops", auth=TOKEN)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    status, headers, body = await http_post(served.port, "/v1/chat/completions", b"{}")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    status, _, body = await http_get(served.port, "/v1/chat/completions", ok)
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, _, body = await http_get(served.port, "/v1/embeddings", ok)
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    big = b'{"model": "door", "messages": [{"role": "user", "content": "' + b"x" * 70000 + b'"}]}'
    status, _, body = await http_post(served.port, "/v1/chat/completions", big, auth=TOKEN)
    assert status == 413
    status, _, _ = await http_get(served.port, "/v1/models", {**ok, "Origin": "http://evil.example"})
    assert status == 403
    status, _, body = await http_get(served.port, "/v1/models", {**ok, "Origin": f"http://127.0.0.1:{served.port}"})
    assert status == 200 and json.loads(body)["object"] == "list"
    status, _, body = await http_get(served.port, f"/v1/models?token={TOKEN}")
    assert status == 200
    _, _, metrics = await http_get(served.port, "/metrics", ok)
    assert b"livesight_openai_refused_total 6.0" in metrics  # 400, 401, 405, 404, 413, 403


async def test_disconnect_cancels_the_answer(served: Running) -> None:
    pipe = served.pipe
    pipe.hold()  # every answer waits before its first word
    body = json.dumps({"model": "door", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(_post_head(served.port, "/v1/chat/completions", len(body), TOKEN) + body)
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    assert b"200 OK" in first
    await eventually(lambda: len(pipe.backend.asked) == 1, what="the model holds the question")
    assert pipe.service.responses.active == 1
    writer.close()
    await writer.wait_closed()
    # the service's answer iterator was closed early: that is how ServiceAPI cancels a query
    await eventually(lambda: pipe.service.responses.active == 0, what="answer closed")
    await eventually(lambda: len(pipe.backend.results) == 1, what="generation ended")
    assert pipe.backend.results[0].stopped  # the model stopped, it did not run on for nobody
    assert served.server.openai.counters.disconnected == 1


async def test_websocket_still_served_beside_it(served: Running) -> None:
    async with connect(f"{served.url}/?token={TOKEN}") as ws, client(served) as c:
        streamed = await c.chat.completions.create(
            model="door", messages=[{"role": "user", "content": "a"}], stream=True
        )
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "b"}))
        done, _ = await recv_until(ws, lambda e: e["type"] == "response.done")
        text = "".join([ch.choices[0].delta.content or "" async for ch in streamed])
    assert done["text"] == echoed("b") and text == echoed("a")


async def test_request_lines_split_across_packets(served: Running) -> None:
    """The connection decides websockets-or-ours from the request line, however it arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    for part in (b"GET /v1/mo", b"dels?token=" + TOKEN.encode(), b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and b'"object":"list"' in data.replace(b" ", b"")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    for part in (b"GET /heal", b"thz HTTP/1.1\r\nHost: x\r\n\r\n"):  # websockets' side, same trick
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and b'"status"' in data


async def test_a_silent_connection_is_dropped() -> None:
    server = WebServer(pipeline(CAMS).service, ServerConfig(host="127.0.0.1", port=0))
    server.request_line_timeout_s = 0.3
    port = await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/mod")  # never finishes its request line
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # dropped by the server
        writer.close()
    finally:
        await server.close()


# ---- helpers --------------------------------------------------------------------------------------------------


def _post_head(port: int, path: str, length: int, auth: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}"] + ([f"Authorization: Bearer {auth}"] if auth else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
