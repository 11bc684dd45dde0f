"""Servers fail; the daemon does not. Each failure over real HTTP (bench/remote/model_stub.py): the camera stays
live and keeps its memory, the question ends with a documented code within model.request_timeout_s, /healthz says
`degraded` with the last error and comes back by itself, and the next question is answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

from livesight.bench.remote.llama_server import free_port
from livesight.bench.remote.model_stub import Drop, Hang, Reply, Status, StubServer, is_question, last_text
from livesight.model.remote.client import BACKOFF_START_S
from livesight.redact import redact_url
from tests.helpers import http_get
from tests.remote.helpers import ask_ws, frames_sampled, frames_with_news, model_health, remote_config, running, until


async def test_each_server_failure_ends_a_question_with_its_code_and_the_daemon_recovers() -> None:
    async with StubServer([Reply("a red car")], scripted=is_question) as srv:
        cfg = remote_config(srv.base_url, model={"request_timeout_s": 2.0})
        async with running(cfg) as app:
            await until(lambda: frames_with_news(app) >= 2, what="frames with news")
            done, deltas = await ask_ws(app.port, "What do you see?")
            assert done["status"] == "completed" and done["text"] == "a red car" == "".join(deltas), done
            req = srv.requests[-1]
            assert req["temperature"] == 0.0 and req["stream"] is True and req["model"] == "stub"
            assert req["messages"][0]["role"] == "system" and last_text(req) == "Question: What do you see?"
            images = [p for p in req["messages"][1]["content"] if p["type"] == "image_url"]
            assert images and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)

            cases = [
                (Status(500, "boom"), "model_unavailable", "HTTP 500"),
                (Status(422, "field 'x' not allowed"), "model_rejected", "field 'x' not allowed"),
                (Hang(6.0), "model_unavailable", "within 2s"),
                (Drop(), "model_unavailable", ""),
            ]
            for behaviour, code, text in cases:
                srv.then(behaviour, Reply("back again"))
                live = frames_sampled(app)
                t0 = time.monotonic()
                done, _ = await ask_ws(app.port)
                assert done["type"] == "response.done" and done["status"] == "failed", done
                assert done["code"] == code and text in done["error"], done
                assert time.monotonic() - t0 < cfg.model.request_timeout_s + 5, "ended within the timeout"
                health = model_health(app)
                assert health["state"] == "degraded" and code in health["last_error"], health
                assert app.service.health()["status"] == "degraded"
                if code != "model_rejected":  # a refusal is cleared by a request that succeeds, not by a probe
                    await until(lambda: model_health(app)["state"] == "ok", 15, "health back by itself (probe)")
                done, _ = await ask_ws(app.port)
                assert done["status"] == "completed" and done["text"] == "back again", (behaviour, done)
                assert model_health(app)["state"] == "ok"
                await until(lambda: frames_sampled(app) > live, 10, "the camera kept going")  # noqa: B023
            counts = model_health(app)["requests"]
            assert counts["model_unavailable"] == 3 and counts["model_rejected"] == 1 and counts["ok"] >= 5
            # the same counters on /metrics, for whoever scrapes rather than polls /healthz
            status, _, body = await http_get(app.port, "/metrics")
            text = body.decode()
            assert status == 200 and "livesight_model_server_ok 1.0" in text, text
            assert 'livesight_model_server_requests_total{outcome="model_unavailable"} 3.0' in text
            assert 'livesight_model_server_requests_total{outcome="model_rejected"} 1.0' in text
            assert 'livesight_model_server_requests_by_kind_total{kind="question"}' in text
            scraped = re.search(r"^livesight_model_server_images_sent_total (\S+)$", text, re.M)
            assert scraped and 0 < float(scraped[1]) <= model_health(app)["images_sent"], text
            assert app.service.stats().cameras["cam"]["frames_failed"] == 0


async def test_429_is_honoured_its_retry_after_nothing_is_sent_before_it() -> None:
    """A 429 with `Retry-After: 4` (far longer than the backoff after one failure, at most 0.6 s): a question asked
    after the backoff but inside the Retry-After is refused here, never sent; once it has passed, the next is sent and
    answered. A client that ignored the header would send that question (and the stub would answer it)."""
    retry_after = 4.0
    backoff_max = BACKOFF_START_S * 1.2  # the first failure's backoff, jitter included
    script = [Status(429, "slow down", {"Retry-After": f"{retry_after:g}"}), Reply("ok now")]
    async with StubServer(script, scripted=is_question) as srv, running(remote_config(srv.base_url)) as app:
        await until(lambda: frames_with_news(app) >= 1, what="a frame with news")
        done, _ = await ask_ws(app.port)
        limited_at = time.monotonic()
        assert done["status"] == "failed" and done["code"] == "model_rate_limited" and "slow down" in done["error"]
        assert model_health(app)["retry_in_s"] > backoff_max + 1, "the wait is the header's, not a backoff"
        sent = len(srv.requests)
        await asyncio.sleep(backoff_max + 0.5 - (time.monotonic() - limited_at))  # past any backoff
        assert time.monotonic() - limited_at < retry_after - 1, "still inside the Retry-After (a slow machine?)"
        done, _ = await ask_ws(app.port)
        assert done["status"] == "failed" and done["code"] == "model_rate_limited", done
        assert len(srv.requests) == sent, "sent inside the server's Retry-After"
        assert model_health(app)["requests"]["not_sent"] >= 1
        await until(lambda: model_health(app)["retry_in_s"] == 0, 10, "Retry-After over")
        assert time.monotonic() - limited_at >= retry_after - 0.5
        done, _ = await ask_ws(app.port)
        assert done["status"] == "completed" and done["text"] == "ok now"
        assert len(srv.requests) == sent + 1


async def test_a_refused_connection_then_a_server_that_comes_up() -> None:
    port = free_port()
    async with running(remote_config(f"http://127.0.0.1:{port}/v1")) as app:
        await until(lambda: frames_with_news(app) >= 1, what="a frame with news")
        done, _ = await ask_ws(app.port)
        assert done["status"] == "failed" and done["code"] == "model_unavailable"
        assert "cannot reach the server" in done["error"]
        assert model_health(app)["state"] == "degraded"
        kept = app.service.stats().cameras["cam"]["remote_images"]
        async with StubServer([Reply("here now")], port=port):
            await until(lambda: model_health(app)["state"] == "ok", 10, "health ok within 10 s of the server's return")
            done, _ = await ask_ws(app.port)
            assert done["status"] == "completed" and done["text"] == "here now"
        assert app.service.stats().cameras["cam"]["remote_images"] >= min(kept, 1), "memory kept"


async def test_vendor_fields_only_when_configured_and_a_strict_server_refuses_them() -> None:
    async with StubServer([Reply("fine")]) as srv:
        cfg = remote_config(srv.base_url, model={"extra_body": {"top_k": 20}})
        async with running(cfg) as app:
            await until(lambda: frames_with_news(app) >= 1, what="a frame with news")
            done, _ = await ask_ws(app.port)
            assert done["code"] == "model_rejected" and "HTTP 422" in done["error"]
            assert "model.extra_body" in done["error"] and "top_k" in done["error"]


async def test_the_api_key_is_sent_to_the_server_and_nowhere_else() -> None:
    secret = "sk-test-" + "7" * 24
    async with StubServer([Status(401, f"invalid key {secret}"), Reply("authorised")], scripted=is_question) as srv:
        cfg = remote_config(srv.base_url, model={"api_key": secret})
        async with running(cfg) as app:
            await until(lambda: frames_with_news(app) >= 1, what="a frame with news")
            done, _ = await ask_ws(app.port)
            assert done["code"] == "model_rejected" and "model.api_key" in done["error"]
            assert srv.headers[-1]["authorization"] == f"Bearer {secret}"
            shown = json.dumps([done, app.service.health(), app.service.stats().cameras, app.service.model_info])
            assert secret not in shown


def test_credentials_in_the_server_url_are_not_shown() -> None:
    assert redact_url("https://user:pw@api.example.com:8443/v1") == "https://***@api.example.com:8443/v1"
    assert redact_url("https://api.example.com/v1?api-key=abc&x=1") == "https://api.example.com/v1?api-key=***&x=1"
    assert redact_url("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1"


async def test_request_timeout_counts_from_arrival_a_question_queued_for_a_slot_included() -> None:
    """model.request_timeout_s bounds a question from its arrival: one slot (concurrent_requests 1) held by an answer
    that never comes; a question queued behind it fails with model_unavailable within its own timeout, not the
    holder's timeout plus its own (the wait for a slot is part of it)."""
    from livesight.config import ModelConfig
    from livesight.model.remote.client import RemoteError, RemoteModel

    timeout = 4.0
    async with StubServer([Hang(60.0)]) as srv:
        model = RemoteModel(
            ModelConfig(
                backend="openai", base_url=srv.base_url, name="stub", request_timeout_s=timeout, concurrent_requests=1
            )
        )
        messages = [{"role": "user", "content": "what now?"}]
        try:
            holder = asyncio.create_task(model.generate(messages, kind="question", max_tokens=8), name="holder")
            await until(lambda: len(srv.requests) == 1, 5, "the first question at the server")
            await asyncio.sleep(1.0)  # the slot stays busy; the next question arrives now and waits for it
            t0 = time.monotonic()
            try:
                await model.generate(messages, kind="question", max_tokens=8)
            except RemoteError as e:
                err = e
            else:
                raise AssertionError("the queued question was answered by a server that never answers")
            waited = time.monotonic() - t0
            assert err.code == "model_unavailable", err
            # ends at its own deadline (~timeout); without the fix it waits for the slot (~timeout - 1 s) first
            assert waited < timeout + 1.5, f"the queued question took {waited:.1f}s (request_timeout_s {timeout:g})"
            with contextlib.suppress(RemoteError):
                await holder
        finally:
            await model.close()
