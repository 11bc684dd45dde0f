"""Two daemons started together, one gateway, one Mosquitto — real processes, the built-in demo stream, proactive on.

A WebSocket client on the gateway asks every camera at the same instant, twelve rounds (the case where ids minted
from a clock and a per-process counter collided across nodes: docs/protocol.md, "Ids"). Every `response.created`
carries an id seen nowhere else, each `response.done` arrives once, and each answer's deltas reach only its own
response. Then the chat page (headless Chromium) asks two cameras on two nodes at once and shows two separate,
non-empty answers.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.fleet.procs import DEMO_FLEET_CONFIG, OWNERS, Proc, gateway, node, write_config
from tests.fleet.test_fleet_e2e import CHROMIUM, HAVE_CHROMIUM, Client, health_until
from tests.helpers import http_get
from tests.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)"),
]

ROUNDS = 12


def check_ids(events: list[dict[str, Any]]) -> tuple[int, int]:
    """Every response id is created once, done at most once, its deltas are its own; (queries, proactive) seen."""
    created = [e for e in events if e["type"] == "response.created"]
    ids = [e["response_id"] for e in created]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"response ids shared by several answers: {dupes}"
    dones = Counter(e["response_id"] for e in events if e["type"] == "response.done")
    assert all(n == 1 for n in dones.values()), {i: n for i, n in dones.items() if n > 1}
    assert set(dones) <= set(ids), "a response.done for an id never created"
    for c in created:
        rid = c["response_id"]
        deltas = [e for e in events if e["type"] == "response.delta" and e["response_id"] == rid]
        done = next((e for e in events if e["type"] == "response.done" and e["response_id"] == rid), None)
        if done is not None and done["status"] == "completed":
            assert "".join(d["delta"] for d in deltas) == done["text"], (c, deltas, done)
        if c["kind"] == "query":
            assert done is not None and done["query_id"] == c["query_id"], c
    return sum(c["kind"] == "query" for c in created), sum(c["kind"] == "proactive" for c in created)


async def test_answers_through_the_gateway_never_share_an_id(broker: Mosquitto, prefix: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, broker.port, prefix, keepalive=10, template=DEMO_FLEET_CONFIG)
    procs: list[Proc] = [node(cfg, "a"), node(cfg, "b"), gateway(cfg)]  # started together, as in the field
    try:
        ports = {p.name: await asyncio.to_thread(p.port) for p in procs}
        gw_port = ports["gateway"]
        await health_until(gw_port, lambda h: h["status"] == "ok", 120, "gateway health ok")
        async with connect(f"ws://127.0.0.1:{gw_port}") as ws:
            client = Client(ws)
            await client.until(lambda e: e["type"] == "session.created", 10, "session.created")
            # the first cut's proactive answers, then the rounds spread over more cuts (one every 5 s per camera)
            await client.until(lambda e: e["type"] == "response.created" and e["kind"] == "proactive", 60, "proactive")
            for r in range(ROUNDS):
                answers = await asyncio.gather(*(client.ask(f"r{r}-{cam}", cam) for cam in OWNERS))
                assert [a["type"] for a in answers] == ["response.done"] * len(OWNERS), answers
                assert all(a["status"] == "completed" for a in answers), answers
                await asyncio.sleep(0.5)
            await client.close()
        queries, proactive = check_ids(client.events)
        assert queries == ROUNDS * len(OWNERS)
        assert proactive > 0, "proactive answers (a cut every 5 s) flowed beside the questions"
        # each node mints ids in its own space: not one id clashed at the gateway (none was renamed to pass)
        status, _, body = await http_get(gw_port, "/metrics")
        assert status == 200
        clashes = re.search(rb"^livesight_gateway_response_id_clashes_total (\S+)$", body, re.M)
        assert clashes is not None and float(clashes[1]) == 0, clashes
        if HAVE_CHROMIUM:
            await _page_asks_two_nodes_at_once(gw_port)
    finally:
        codes = [p.stop() for p in procs]
    assert codes[2] == 0, "".join(procs[2].lines[-30:])
    if not HAVE_CHROMIUM:  # the chat page part did not run: a failure in CI, where Chromium must be installed
        why = f"the chat page part needs Chromium ({CHROMIUM}: scripts/system-deps.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {why}")
        pytest.skip(f"the ids were checked; {why}")


async def _page_asks_two_nodes_at_once(port: int) -> None:
    """The chat page keys answers by response id: two cameras on two nodes asked at once → two bubbles, each ending
    with its own non-empty text (with shared ids one bubble stayed empty and the other got both answers)."""
    from playwright.async_api import async_playwright

    from tests.protocols.web.test_browser import ARGS

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.locator("#conn.conn-on").wait_for(timeout=10_000)
            pair = ("door", "gate")  # node a, node b
            assert {OWNERS[c] for c in pair} == {"a", "b"}
            for cam in pair:
                await page.locator("#camera option", has_text=cam).wait_for(state="attached", timeout=10_000)
                await page.select_option("#camera", cam)
                await page.fill("#question", f"What do you see on {cam}?")
                await page.press("#question", "Enter")
            for cam in pair:
                bubbles = page.locator("li.msg.answer", has=page.locator(".meta", has_text=f"{cam} · answer"))
                done = bubbles.and_(page.locator("li.msg.answer:not(.streaming)"))
                await done.first.wait_for(timeout=60_000)
                assert await bubbles.count() == 1, f"{cam}: one answer bubble"
                text = await done.first.locator(".text").inner_text()
                assert text.strip(), f"{cam}: the answer bubble is empty"
                assert "failed" not in await done.first.locator(".info").inner_text()
        finally:
            await browser.close()
