"""The gateway's /healthz and /metrics cost O(cameras) only when something changed, never per request (pure)."""

from __future__ import annotations

import json
import time

from starlette.requests import Request

from livesight.gateway.health import HealthCache
from livesight.protocols.web.access import AUTHORIZED


def request(authorized: bool) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [], "query_string": b""}
    return Request({**scope, "state": {AUTHORIZED: authorized}})


async def test_the_body_is_built_once_per_change_and_answered_from_bytes() -> None:
    version = [0]
    builds: list[int] = []
    renders: list[float] = []

    def build() -> dict:
        builds.append(version[0])
        return {"status": "degraded", "cameras": {f"c{i}": {"state": "live"} for i in range(5000)}}

    def render() -> bytes:
        renders.append(time.monotonic())
        return b"# metrics\n"

    cache = HealthCache(
        build=build,
        versions=lambda: (version[0],),
        clients=lambda: 7,
        render_metrics=render,
        content_type="text/plain",
        every_s=0.05,
        metrics_every_s=0.05,
    )
    for _ in range(50):
        r = await cache.healthz(request(True))
        body = json.loads(r.body)
        assert r.status_code == 200 and body["clients"] == 7 and len(body["cameras"]) == 5000
    assert builds == [0]  # fifty answers, one build
    assert json.loads((await cache.healthz(request(False))).body) == {"status": "degraded"}  # no token: the status
    version[0] = 1  # something changed: rebuilt once (at most every every_s), then answered from bytes again
    await cache.healthz(request(True))
    time.sleep(0.06)  # noqa: ASYNC251 - a plain interval of the cache's own clock
    await cache.healthz(request(True))
    await cache.healthz(request(True))
    assert builds == [0, 1]
    for _ in range(5):
        assert (await cache.metrics(request(True))).body == b"# metrics\n"
    assert len(renders) == 1
