"""A summary question against llama.cpp's server (a model server nobody here wrote): the daemon with
`model.backend: openai` answers "what happened in the last hour?" from the timeline's captions with a text-only chat
request (no image sent), streamed, with citations."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path

import pytest

from livesight.bench.remote.llama_server import LlamaServer
from livesight.timeline.summary import Summaries
from livesight.types import Keyframe, TimelineEntry
from tests.remote.helpers import STATIC, ask_ws, model_health, remote_config, running
from tests.timeline.conftest import close_store, jpeg, open_store

pytestmark = pytest.mark.slow


async def test_a_summary_question_is_a_text_only_request(llama_server: LlamaServer, tmp_path: Path) -> None:
    now = time.time()
    store = open_store(tmp_path / "ev.sqlite")
    for i, caption in enumerate(["a red van parks at the gate", "a courier carries a box away"]):
        start = now - 1800 + 600 * i
        e = TimelineEntry(
            f"tl_{i}",
            "cam",
            i + 1,
            0,
            float(i),
            start,
            float(i) + 30,
            start + 30,
            caption,
            (Keyframe("first", 0, start),),
        )
        store.add_entry(e, [jpeg(90 + 40 * i)])
    store.flush()
    cfg = remote_config(
        llama_server.base_url,
        cameras=[{"id": "cam", "source": STATIC, "sample_fps": 2}],
        model={"name": "tiny-vl", "max_new_tokens": 8, "request_timeout_s": 300},
    )
    try:
        async with running(cfg) as app:
            app.service.summaries = Summaries(store.between, zone=UTC)
            images_before = model_health(app)["images_sent"]
            done, deltas = await ask_ws(app.port, "What happened in the last hour?", within=400)
            assert done["type"] == "response.done" and done["status"] == "completed", done
            assert "".join(deltas) == done["text"]
            assert [c["id"] for c in done["citations"]] == ["tl_0", "tl_1"]
            health = model_health(app)
            assert health["requests_by_kind"]["question"] == 1 and health["images_sent"] == images_before
    finally:
        close_store(store)
