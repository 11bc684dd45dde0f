"""Hostile input: random messages at the codec and at a live server, floods of queries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from livesight.protocols.contract import events as ev
from tests.helpers import Running, recv_json, recv_until, start_server, stop_server

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(json_value, st.sampled_from(["q1", "cam1", "", " ", "x" * 2001, "a\x00b", "../x", "é" * 70]))
# Messages that look nearly right: a known type with random field values, plus random extra fields.
near_miss = st.builds(
    lambda typ, fields, extra: {"type": typ, **fields, **extra},
    st.sampled_from([*ev.CLIENT_TYPES, "Query", "", "response.done"]),
    st.dictionaries(st.sampled_from(["id", "text", "camera", "proactive", "event_id"]), field_values, max_size=5),
    st.dictionaries(st.text(max_size=8), json_value, max_size=1),
)
raw_message = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=64),
    json_value.map(json.dumps),
    near_miss.map(json.dumps),
)


@settings(max_examples=600, deadline=None)
@given(raw_message)
def test_codec_raises_only_its_own_error(raw: str | bytes) -> None:
    try:
        msg = ev.decode_client(raw)
    except ev.ProtocolError as e:
        assert e.code in vars(ev.ErrorCode).values()
        assert e.message and len(e.message) < 400
        assert e.event_id is None or ev.ID_PATTERN.match(e.event_id)
        json.dumps(ev.encode_error(e))  # always encodable
        return
    # Whatever is accepted is well-formed.
    if hasattr(msg, "id"):
        assert ev.ID_PATTERN.match(msg.id)
    text = getattr(msg, "text", None)
    if text is not None:
        assert 0 < len(text) <= ev.MAX_TEXT_CHARS and text == text.strip() and "\x00" not in text
    camera = getattr(msg, "camera", None)
    assert camera is None or ev.CAMERA_PATTERN.match(camera)


async def _throw_at_server(messages: list[str | bytes]) -> None:
    r = await start_server()
    try:
        async with connect(r.url) as hostile, connect(r.url) as bystander:
            for ws in (hostile, bystander):
                await recv_json(ws)  # session.created
                await recv_json(ws)  # stats
            for m in messages:
                await hostile.send(m)
            # The hostile connection still works: a marker query is answered after all that.
            await hostile.send(json.dumps({"type": "query", "id": "marker", "text": "still ok?"}))
            done, _ = await recv_until(
                hostile, lambda e: e["type"] == "response.done" and e.get("query_id") == "marker", within=10
            )
            assert done["status"] == "completed"
            # The bystander saw nothing of it but broadcasts.
            r.pipe.scene("cam1", 42)
            scene = await recv_json(bystander)
            assert scene["type"] == "scene.change" and scene["scene"] == 42
    finally:
        await stop_server(r)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_message, min_size=1, max_size=15))
def test_random_messages_never_break_the_server(messages: list[str | bytes]) -> None:
    asyncio.run(_throw_at_server(messages))


async def test_query_flood_is_bounded(running: Running) -> None:
    svc = running.pipe.service
    gate = running.pipe.hold()
    n = 120
    async with connect(running.url) as ws:
        limits = (await recv_json(ws))["limits"]
        await recv_json(ws)
        for i in range(n):
            await ws.send(json.dumps({"type": "query", "id": f"f{i}", "text": "flood"}))
        outcome: dict[str, Any] = {}
        async with asyncio.timeout(10):
            while len(outcome) < n:
                e = await recv_json(ws)
                if e["type"] == "response.created":
                    outcome[e["query_id"]] = "created"
                elif e["type"] == "error" and e["code"] == "busy":
                    outcome[e["event_id"]] = "busy"
                elif e["type"] == "error" and e["code"] == "rate_limited":
                    outcome[f"rl{len(outcome)}"] = "rate_limited"  # a rate-limited message is not even parsed
        counts = {k: list(outcome.values()).count(k) for k in ("created", "busy", "rate_limited")}
        assert counts["created"] == limits["max_concurrent_queries"] == svc.responses.active
        assert counts["busy"] > 0 and counts["rate_limited"] > 0
        assert sum(counts.values()) == n
        gate.set()
        finished = 0
        async with asyncio.timeout(10):
            while finished < counts["created"]:
                e = await recv_json(ws)
                finished += e["type"] == "response.done"
        await asyncio.sleep(limits["burst"] / limits["rate_per_s"])  # the bucket refills
        await ws.send(json.dumps({"type": "query", "id": "after", "text": "calm again"}))
        done, _ = await recv_until(ws, lambda e: e["type"] == "response.done")
        assert done["query_id"] == "after" and done["status"] == "completed"
