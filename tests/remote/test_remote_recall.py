"""Recall over a model server (`model.backend: openai`): a question about the past sends the recalled lines and
keyframes — each image after a text part with its time — after the live frames and before the question, and its
`response.done` cites them. Real HTTP to the stub server, a real WebSocket client, a real timeline on disk."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from livesight.bench.remote.model_stub import Reply, StubServer, is_question
from tests.remote.helpers import ask_ws, frames_with_news, remote_config, running, until
from tests.timeline.plant import ACTION, plant


async def test_a_question_about_the_past_sends_the_recalled_keyframes_with_their_times(tmp_path: Path) -> None:
    async with StubServer([Reply("a red van, at 14:03"), Reply("nothing now")], scripted=is_question) as srv:
        cfg = remote_config(
            srv.base_url,
            memory={"database": str(tmp_path / "events.sqlite"), "recall": {"timezone": "UTC"}},
            model={"images_per_request": 4},
        )
        async with running(cfg) as app:
            assert app.timeline is not None
            made = await plant(app.timeline, time.time())
            await until(lambda: frames_with_news(app) > 0, what="a live frame kept")
            done, _ = await ask_ws(app.port, "What happened 10 minutes ago?")
            assert done["type"] == "response.done" and done["status"] == "completed", done
            assert [c["id"] for c in done["citations"]] == [made["van"].id]
            req = next(r for r in srv.requests if is_question(r))
            parts = req["messages"][-1]["content"]
            kinds = [p["type"] for p in parts]
            assert kinds[-1] == "text" and parts[-1]["text"] == "Question: What happened 10 minutes ago?"
            # the recalled segment: after the live frames, before the question
            lines = next(i for i, p in enumerate(parts) if p["type"] == "text" and "a red van stops" in p["text"])
            assert "image_url" in kinds[:lines]  # the live window came first
            label, image = parts[lines + 1], parts[lines + 2]
            assert label["type"] == "text" and label["text"].startswith("Keyframe at ")
            assert image["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(ACTION).decode()
            assert sum(k == "image_url" for k in kinds) <= 4  # model.images_per_request holds with recall
            done, _ = await ask_ws(app.port, "What is there now?")
            assert done["citations"] == []
            now_req = [r for r in srv.requests if is_question(r)][-1]
            assert not any("Keyframe at" in (p.get("text") or "") for p in now_req["messages"][-1]["content"])
