"""What users have with a local model keeps working with a remote server: proactive messages at scene changes,
watches (also checked on newly kept frames, pushed when the answer turns to yes), scene captions that reach the next
question's timeline — over real HTTP to the stub server, through a real WebSocket."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from livesight.bench.remote.model_stub import StubServer, last_text
from tests.remote.helpers import remote_config, running, until


def answer(req: dict) -> str:
    text = last_text(req).removeprefix("Question: ")
    if text.startswith("Describe briefly"):
        return "a new scene"
    if text.endswith("Answer yes or no."):
        return "yes, a person"
    if text.startswith("Describe what happened in this scene"):
        return "a caption"
    return "an answer"


def is_(kind: str, req: dict) -> bool:
    return answer(req) == kind


async def test_proactive_watches_and_captions_with_a_remote_server() -> None:
    async with StubServer(answer=answer, scripted=lambda req: False) as srv:
        cfg = remote_config(
            srv.base_url,
            cameras=[{"id": "cam", "source": "builtin:demo", "sample_fps": 2}],
            proactive={"enabled": True, "min_interval_s": 0},
            model={"watch_interval_s": 1.0, "image_tokens_per_min": 0},
        )
        async with running(cfg) as app, connect(f"ws://127.0.0.1:{app.port}") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "watch.add", "id": "w1", "text": "Is there a person?"}))
            proactive, watch_pushes, scene = None, 0, None

            def checks() -> int:
                return sum(is_("yes, a person", r) for r in srv.requests)

            async with asyncio.timeout(60):
                while proactive is None or scene is None or watch_pushes < 1 or checks() < watch_pushes + 2:
                    e = json.loads(await ws.recv())
                    if e["type"] == "scene.change":
                        scene = e
                    elif e["type"] == "response.done" and e.get("kind") == "proactive":
                        proactive = e
                    elif e["type"] == "response.done" and e.get("watch_id") == "w1":
                        assert e["text"] == "yes, a person" and e["status"] == "completed"
                        watch_pushes += 1
            assert proactive["status"] == "completed" and proactive["text"] == "a new scene"
            proactive_req = next(r for r in srv.requests if is_("a new scene", r))
            assert any(p["type"] == "image_url" for p in proactive_req["messages"][1]["content"])
            watch_checks = sum(is_("yes, a person", r) for r in srv.requests)
            assert watch_checks > watch_pushes, "a watch still true on new frames is not pushed again"
            await until(lambda: app.service.stats().cameras["cam"]["remote_captions"] >= 1, 30, "a caption")
            await ws.send(json.dumps({"type": "query", "id": "q", "text": "What happened?"}))
            async with asyncio.timeout(30):
                while not ((e := json.loads(await ws.recv()))["type"] == "response.done" and e.get("query_id") == "q"):
                    pass
            assert e["text"] == "an answer"
            question = next(r for r in reversed(srv.requests) if is_("an answer", r))
            intro = question["messages"][1]["content"][0]["text"]
            assert "Earlier scenes, oldest first:" in intro and "a caption" in intro
            health = app.service.health()["model"]
            # counted by kind (checks go on every watch_interval_s meanwhile: at least those the server had seen)
            assert health["requests_by_kind"]["caption"] >= 1 and health["requests_by_kind"]["watch"] >= watch_checks


async def test_the_openai_face_answers_from_the_remote_server() -> None:
    import openai

    async with (
        StubServer(answer=answer, scripted=lambda req: False) as srv,
        running(remote_config(srv.base_url)) as app,
    ):
        await until(lambda: app.service.stats().cameras["cam"]["frames_with_news"] >= 1, what="news")
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{app.port}/v1", api_key="x", max_retries=0)
        try:
            r = await client.chat.completions.create(
                model="livesight/cam", messages=[{"role": "user", "content": "What do you see?"}]
            )
            assert r.choices[0].message.content == "an answer"
            stream = await client.chat.completions.create(
                model="livesight/cam", messages=[{"role": "user", "content": "And now?"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "an answer"
        finally:
            await client.close()
