"""Summaries through the daemon's real Service, model worker (echo backend: it echoes the prompt it was given) and web
face: a "what happened?" question is answered as a summary (text-only generation, citations on done), and
GET /api/cameras/<id>/summary streams it as Server-Sent Events or answers JSON."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from urllib.parse import quote

import pytest

from livesight.config import ServerConfig
from livesight.protocols.contract.api import SummaryEnd
from livesight.protocols.web.server import WebServer
from livesight.timeline.summary import Summaries
from livesight.types import Keyframe, ResponseCreated, ResponseDelta, ResponseDone, ResponseStatus, TimelineEntry
from tests.helpers import eventually, http_get, http_post
from tests.pipeline import Pipeline, pipeline
from tests.timeline.conftest import close_store, jpeg, open_store


def entry(i: int, start: float, caption: str | None, camera: str = "cam1") -> TimelineEntry:
    return TimelineEntry(
        id=f"tl_{i:04d}",
        camera=camera,
        scene=i,
        chunk=0,
        pts=float(i),
        wall_time=start,
        end_pts=float(i) + 30,
        end_wall_time=start + 30,
        caption=caption,
        keyframes=(Keyframe("first", float(i), start),),
        caption_state="done" if caption else "pending",
    )


NOW = time.time()
ENTRIES = [entry(1, NOW - 1800, "a red van parks by the door"), entry(2, NOW - 600, "a courier carries a box away")]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Pipeline, int]]:
    store = open_store(tmp_path / "ev.sqlite")  # a real event log file with its timeline, real JPEGs
    for e in ENTRIES:
        store.add_entry(e, [jpeg(120)])
    store.flush()
    pipe = pipeline(["cam1", "cam2"]).start()
    pipe.service.summaries = Summaries(store.between, zone=UTC)
    server = WebServer(pipe.service, ServerConfig(host="127.0.0.1", port=0), summaries=pipe.service)
    port = await server.start()
    try:
        yield pipe, port
    finally:
        await server.close()
        await pipe.stop()
        close_store(store)


async def test_a_what_happened_question_is_answered_as_a_summary(served: tuple[Pipeline, int]) -> None:
    pipe, _ = served
    events = [
        ev async for ev in pipe.service.query(camera="cam1", text="What happened in the last hour?", query_id="q")
    ]
    assert isinstance(events[0], ResponseCreated) and events[0].query_id == "q"
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.status is ResponseStatus.COMPLETED
    deltas = "".join(e.text for e in events if isinstance(e, ResponseDelta))
    assert deltas == done.text and all(e.response_id == done.response_id for e in events[1:])
    assert done.completion_tokens > 0 and done.prompt_tokens > 0 and done.ttft_ms is not None
    # the echo backend answers with the prompt it was given: the captions as time-stamped lines, no live context
    assert "a red van parks by the door" in done.text and "a courier carries a box away" in done.text
    assert "I hold 0 frames" in done.text
    assert [c.id for c in done.citations] == ["tl_0001", "tl_0002"]
    assert done.citations[0].thumbnail == "/api/timeline/tl_0001/keyframes/0.jpg"
    # another question is the live answer, as before
    other = [ev async for ev in pipe.service.query(camera="cam1", text="is the door open?", query_id="q2")]
    assert isinstance(other[-1], ResponseDone) and other[-1].citations == () and "door open" in other[-1].text


async def test_an_empty_period_is_said_without_the_model(served: tuple[Pipeline, int]) -> None:
    pipe, _ = served
    asked = len(pipe.backend.asked)
    events = [
        ev async for ev in pipe.service.query(camera="cam2", text="anything happen in the last hour?", query_id=None)
    ]
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.text.startswith("Nothing was recorded on camera cam2 between ")
    assert len(pipe.backend.asked) == asked


def parse_sse(body: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_the_summary_endpoint_streams_server_sent_events(served: tuple[Pipeline, int]) -> None:
    _, port = served
    start, end = int(NOW - 3600), int(NOW)
    status, headers, body = await http_get(port, f"/api/cameras/cam1/summary?from={start}&to={end}")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = parse_sse(body)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"delta"}
    done = events[-1][1]
    assert done["status"] == "completed" and done["cached"] is False and done["entries"] == 2
    assert done["from"] == start and done["to"] == end
    assert "".join(str(d["text"]) for k, d in events if k == "delta") == done["text"]
    assert [c["id"] for c in done["citations"]] == ["tl_0001", "tl_0002"]  # type: ignore[index]


async def test_the_summary_endpoint_answers_json_and_takes_iso_times(served: tuple[Pipeline, int]) -> None:
    _, port = served
    from datetime import datetime

    start = quote(datetime.fromtimestamp(NOW - 3600, UTC).isoformat())
    status, headers, body = await http_get(port, f"/api/cameras/cam1/summary?from={start}&stream=false")
    assert status == 200 and headers["content-type"] == "application/json"
    obj = json.loads(body)
    assert "a red van parks by the door" in obj["text"] and len(obj["citations"]) == 2
    # defaults: the last hour
    status, _, body = await http_get(port, "/api/cameras/cam1/summary?stream=false")
    assert status == 200 and json.loads(body)["to"] - json.loads(body)["from"] == 3600


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/api/cameras/cam1/summary?from=yesterday", 400, "from must be ISO-8601"),
        ("/api/cameras/cam1/summary?to=2026-12-07T14:00:00", 400, "to needs a zone"),
        ("/api/cameras/cam1/summary?from=200&to=100", 400, "'to' must be after 'from'"),
        ("/api/cameras/cam1/summary?stream=maybe", 400, "stream must be true or false"),
        ("/api/cameras/nope/summary", 404, "unknown camera nope"),
    ],
)
async def test_bad_requests_are_refused_naming_the_parameter(
    served: tuple[Pipeline, int], path: str, code: int, reason: str
) -> None:
    _, port = served
    status, _, body = await http_get(port, path)
    assert status == code and reason in body.decode()


async def test_the_openai_face_answers_a_summary_question_with_citations(served: tuple[Pipeline, int]) -> None:
    _, port = served
    body = json.dumps(
        {"model": "livesight/cam1", "messages": [{"role": "user", "content": "What happened in the last hour?"}]}
    ).encode()
    status, _, raw = await http_post(port, "/v1/chat/completions", body)
    assert status == 200, raw
    completion = json.loads(raw)
    assert "a red van parks by the door" in completion["choices"][0]["message"]["content"]
    assert [c["id"] for c in completion["citations"]] == ["tl_0001", "tl_0002"]


@pytest.mark.slow
async def test_the_daemon_summarises_its_own_timeline(tmp_path: Path) -> None:
    """The app wires the summaries over its timeline: the demo stream cuts every 5 s, scenes become captioned
    entries, and a summary question over WebSocket is answered from them, citing them."""
    import asyncio

    from websockets.asyncio.client import connect

    from livesight.config import parse_config
    from livesight.daemon.app import App, run_app

    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo", "sample_fps": 4}],
            "model": {"backend": "echo", "max_new_tokens": 16},
            "dtd": {"mode": "pixel"},
            "memory": {"token_budget": 1024, "database": str(tmp_path / "events.sqlite")},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0},
        },
        origin="test",
    )
    app = App(cfg)
    runner = asyncio.create_task(run_app(app), name="app")
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        assert app.timeline is not None and handles.service.summaries is not None
        timeline = app.timeline

        def captioned() -> int:
            return sum(1 for e in timeline.between("cam", 0, time.time() + 60, limit=100) if e.caption)

        async with asyncio.timeout(40):
            while captioned() < 1:  # noqa: ASYNC110 - the store exposes no event
                await asyncio.sleep(0.2)
        async with connect(f"ws://127.0.0.1:{handles.port}") as ws:
            await ws.recv()  # session.created
            await ws.send(json.dumps({"type": "query", "id": "q", "text": "what happened in the last hour?"}))
            async with asyncio.timeout(20):
                while True:
                    e = json.loads(await ws.recv())
                    if e["type"] == "response.done" and e.get("query_id") == "q":
                        break
        assert e["status"] == "completed" and e["citations"] and e["citations"][0]["camera"] == "cam"
        assert "You asked: Camera cam, between" in e["text"]  # the echo of the summary prompt
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)


async def test_a_summary_with_too_many_questions_waiting_ends_busy(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ev.sqlite")
    for e in ENTRIES:
        store.add_entry(e, [jpeg(120)])
    store.flush()
    pipe = pipeline(["cam1"], response_queue_size=1).start()
    pipe.service.summaries = Summaries(store.between, zone=UTC)
    gate = pipe.hold()
    try:
        running = pipe.service.query(camera="cam1", text="first", query_id="a")
        await anext(running)
        await eventually(lambda: pipe.service.responses.waiting()["queries"] == 0, 5, "the first one generating")
        waiting = pipe.service.query(camera="cam1", text="second", query_id="b")
        await anext(waiting)  # one generating (held), one waiting: the queue of questions is full
        events = [ev async for ev in pipe.service.summary(camera="cam1", start=NOW - 3600, end=NOW)]
        end = events[-1]
        assert isinstance(end, SummaryEnd) and end.done.status is ResponseStatus.FAILED and end.done.code == "busy"
        await running.aclose()
        await waiting.aclose()
    finally:
        gate.set()
        await pipe.stop()
        close_store(store)
