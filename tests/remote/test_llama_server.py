"""Against a real OpenAI-compatible vision server nobody here wrote: llama.cpp's server (llama-cpp-python[server],
built from its sdist) serving a GGUF conversion of the tiny random Qwen2.5-VL with its vision projector. Images go as
data: URLs through the official client. The daemon answers questions, speaks at scene changes and captions scenes."""

from __future__ import annotations

import asyncio

import pytest

from livesight.bench.remote.llama_server import LlamaServer
from livesight.types import ResponseCreated, ResponseDone, ResponseKind, ResponseStatus
from tests.remote.helpers import ask_ws, model_health, remote_config, running, until

pytestmark = pytest.mark.slow


async def test_a_daemon_on_the_llama_cpp_server_answers_and_speaks_at_scene_changes(llama_server: LlamaServer) -> None:
    cfg = remote_config(
        llama_server.base_url,
        cameras=[{"id": "cam", "source": "builtin:demo", "sample_fps": 2}],
        model={"name": "tiny-vl", "max_new_tokens": 8, "images_per_request": 4, "request_timeout_s": 120},
        proactive={"enabled": True, "min_interval_s": 0},
    )
    async with running(cfg) as app:
        stats = lambda: app.service.stats().cameras["cam"]  # noqa: E731
        await until(lambda: stats()["frames_with_news"] >= 2, what="frames with news")
        done, deltas = await ask_ws(app.port, "What do you see?", within=180)
        assert done["type"] == "response.done" and done["status"] == "completed", done
        assert "".join(deltas) == done["text"] and done["ttft_ms"] > 0
        # the demo cuts every 5 s: a proactive message about the new scene, and a caption of the one that ended
        events = app.service.subscribe(maxsize=1024)
        proactive: ResponseDone | None = None
        ids: set[str] = set()
        try:
            async with asyncio.timeout(180):
                async for ev in events:
                    if isinstance(ev, ResponseCreated) and ev.kind is ResponseKind.PROACTIVE:
                        ids.add(ev.response_id)
                    elif isinstance(ev, ResponseDone) and ev.response_id in ids:
                        proactive = ev
                        break
        finally:
            events.close()
        assert proactive is not None and proactive.status is ResponseStatus.COMPLETED, proactive
        await until(lambda: stats()["remote_captions"] >= 1, 180, "a scene caption from the server")
        health = model_health(app)
        assert health["state"] == "ok" and health["requests"]["ok"] >= 3
        by_kind = health["requests_by_kind"]
        assert by_kind["question"] == 1 and by_kind["proactive"] >= 1 and by_kind["caption"] >= 1
        assert health["images_sent"] >= 3 and health["image_tokens_sent"] > 0
