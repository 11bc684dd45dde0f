"""Recall through the whole daemon: past timeline entries written through the store, questions over a real WebSocket
client and the official `openai` client → `response.done` carries the right citations and the model was given the
recalled lines and keyframes; a question about now recalls nothing. The echo backend shows what it was given; the
tiny real model shows the recalled keyframes going through its vision tower."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from websockets.asyncio.client import connect

from livesight.config import parse_config
from livesight.daemon.app import App, run_app
from livesight.model.echo import EchoContext
from livesight.protocols.contract.events import finite
from livesight.types import TimelineEntry, keyframe_url
from tests.daemon.conftest import ask, running
from tests.helpers import recv_until, tiny_backend
from tests.timeline.plant import ACTION, plant


def config(db: Path, backend: str = "echo") -> Any:
    model = {"backend": "echo", "max_new_tokens": 200} if backend == "echo" else {"preset": "tiny-random"}
    return parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo", "sample_fps": 2}],
            "model": {**model},
            "dtd": {"mode": "pixel"},
            "memory": {"token_budget": 2048, "database": str(db), "recall": {"timezone": "UTC"}},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 5},
        },
        origin="test",
    )


def cited(e: TimelineEntry) -> dict[str, Any]:
    """The citation of `e` as on the wire (floats as the codec writes them)."""
    return {
        "camera": "cam",
        "scene": e.scene,
        "id": e.id,
        "pts": finite(e.pts),
        "wall_time": finite(e.wall_time),
        "thumbnail": keyframe_url(e.id, 0),
    }


async def query(ws: Any, qid: str, text: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "query", "id": qid, "text": text}))
    done, _ = await recv_until(ws, lambda e: e["type"] == "response.done" and e.get("query_id") == qid, 30)
    assert done["status"] == "completed", done
    return done


async def test_questions_about_the_past_carry_citations_over_websocket_and_openai(tmp_path: Path) -> None:
    app = App(config(tmp_path / "events.sqlite"))
    runner = asyncio.create_task(run_app(app), name="app")
    try:
        handles = await asyncio.wait_for(app.wait_ready(), 30)
        assert app.timeline is not None and handles.service.recaller is not None
        made = await plant(app.timeline, time.time())
        van = made["van"]
        ctx = app.worker.lanes["cam"].memory.ctx  # type: ignore[union-attr]
        assert isinstance(ctx, EchoContext)
        async with connect(f"ws://127.0.0.1:{handles.port}") as ws:
            await recv_until(ws, lambda e: e["type"] == "session.created", 5)
            done = await query(ws, "q1", "What happened 10 minutes ago?")
            assert done["citations"] == [cited(van)]
            # the model was given the recalled line and the entry's action keyframe, after its time
            given = ctx.recalled_seen[-1]
            assert "a red van stops at the gate" in given.text and [i.jpeg for i in given.images] == [ACTION]
            assert given.images[0].label.startswith("Keyframe at ")
            assert done["text"].startswith("Recalled 1 images (Keyframe at ") and "a red van stops" in done["text"]

            done = await query(ws, "q2", "When did the red van come?")
            assert done["citations"] == [cited(van)]

            seen = len(ctx.recalled_seen)
            done = await query(ws, "q3", "What is happening now?")
            assert done["citations"] == [] and len(ctx.recalled_seen) == seen  # nothing recalled, nothing given
            assert done["text"].startswith("I hold ")

        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{handles.port}/v1", api_key="x", max_retries=0) as c:
            out = await c.chat.completions.create(
                model="livesight/cam", messages=[{"role": "user", "content": "did a cat come by yesterday?"}]
            )
            assert out.model_extra is not None and [x["id"] for x in out.model_extra["citations"]] == [made["cat"].id]
            stream = await c.chat.completions.create(
                model="livesight/cam", messages=[{"role": "user", "content": "what is there now?"}], stream=True
            )
            chunks = [ch async for ch in stream]
            last = next(ch for ch in reversed(chunks) if ch.choices and ch.choices[0].finish_reason)
            assert last.model_extra is not None and last.model_extra["citations"] == []
    finally:
        app.stop()
        await asyncio.wait_for(runner, 30)


@pytest.mark.slow
async def test_the_tiny_model_sees_the_recalled_keyframes(tmp_path: Path) -> None:
    """In-process with the real (tiny) model: the recalled keyframe goes through the vision tower into the question's
    prompt (its tokens count in usage), and the live context is left as it was."""
    cfg = config(tmp_path / "events.sqlite", backend="tiny")
    async with running(cfg, tiny_backend()) as (app, _task):
        assert app.timeline is not None
        made = await plant(app.timeline, time.time())
        plain = await ask(app, "cam", "What is on the table?")
        assert plain.citations == ()
        done = await ask(app, "cam", "What happened 10 minutes ago?")
        assert [c.id for c in done.citations] == [made["van"].id]
        gh, gw = app._backend.info.grid_hw  # type: ignore[union-attr]
        assert done.prompt_tokens >= plain.prompt_tokens + gh * gw  # one keyframe's image tokens, and the lines
