"""docs/protocol.md stays true: every JSON example decodes (client) or has exactly the encoder's fields (server)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from livesight.fleet.topics import CameraInfo, encode_camera_info
from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import StatsSnapshot
from livesight.types import (
    CameraState,
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)
from tests.helpers import Running, recv_json

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    return [json.loads(b) for b in blocks]


def encoder_samples() -> dict[str, list[dict[str, Any]]]:
    created = ResponseCreated("r", "c", ResponseKind.QUERY, query_id="q")
    done = ResponseDone("r", ResponseStatus.COMPLETED, "t", 1, 1, ttft_ms=1.0)
    return {
        "response.created": [ev.encode_response(created)],
        "response.delta": [ev.encode_response(ResponseDelta("r", "x"), query_id="q", kind="query")],
        "response.done": [
            ev.encode_response(done, query_id="q", kind="query"),
            ev.encode_response(  # a failure with its code (a remote model server's)
                ResponseDone("r", ResponseStatus.FAILED, "", error="e", code="model_unavailable"),
                query_id="q",
                kind="query",
            ),
        ],
        "scene.change": [ev.encode_scene_change(SceneChange("c", 1, 0.0, 0.0, 0.0))],
        "camera.state": [ev.encode_camera_state(CameraStatus("c", CameraState.LIVE, "", 0.0))],
        "stats": [ev.encode_stats(StatsSnapshot(0.0, {}, {}))],
        "error": [ev.encode_error(ev.ProtocolError("busy", "m"))],
        "session.updated": [ev.encode_session_updated(session_id="s", camera="c", proactive=True)],
        "watch.added": [ev.encode_watch_added(watch_id="w", camera="c", text="t")],
        "watch.removed": [ev.encode_watch_removed(watch_id="w")],
        "camera.info": [
            encode_camera_info(CameraInfo("c", "n", "ws://n:1", "m", "live", "", 0.0)),
            encode_camera_info(CameraInfo("c", "n", "ws://n:1", "m", "live", "", 0.0), key="fleet-credential"),
        ],
    }


def test_every_example_matches_the_codec() -> None:
    found = examples()
    assert len(found) >= 15
    samples = encoder_samples()
    seen: set[str] = set()
    for example in found:
        typ = example["type"]
        seen.add(typ)
        if typ in ev.CLIENT_TYPES:
            ev.decode_client(json.dumps(example))  # raises if the doc shows something the server refuses
            continue
        if typ == "session.created":
            continue  # compared with a live server below
        assert typ in samples, f"docs/protocol.md shows an unknown event type {typ!r}"
        # the sample of this type with the fewest differences (an event may have optional fields, e.g. a code)
        expected = min((set(x) for x in samples[typ]), key=lambda keys: len(keys ^ set(example)))
        extra = set(example) - expected
        assert expected <= set(example), f"{typ}: the doc lacks {expected - set(example)}"
        assert extra <= {"camera"}, f"{typ}: the doc shows fields the encoder never writes: {extra}"
    assert seen >= set(ev.CLIENT_TYPES) | set(samples) | {"session.created"}, "undocumented events"


async def test_session_created_example_matches_a_live_one(running: Running) -> None:
    (doc,) = [e for e in examples() if e["type"] == "session.created"]
    async with connect(running.url) as ws:
        live = await recv_json(ws)
    assert set(doc) == set(live)
    assert set(doc["session"]) == set(live["session"])
    assert set(doc["limits"]) == set(live["limits"])
    assert set(doc["cameras"][0]) == set(live["cameras"][0])
    assert doc["protocol"] == live["protocol"] == ev.PROTOCOL_VERSION


def named_examples() -> dict[str, Any]:
    """The HTTP answers shown in docs/protocol.md, fenced as ```json NAME."""
    blocks = re.findall(r"```json ([\w.]+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: json.loads(b) for name, b in blocks}


def test_summary_and_gateway_scene_examples_have_the_encoders_fields() -> None:
    from livesight.gateway.api.scenes import merged_reply
    from livesight.protocols.contract.api import SummaryEnd
    from livesight.protocols.web.history.summary_routes import done_body
    from livesight.types import Citation

    found = named_examples()
    cite = Citation("gate", 12, "tl_1", 1.0, 2.0, "/api/timeline/tl_1/keyframes/0.jpg")
    done = ResponseDone("r", ResponseStatus.COMPLETED, "t", citations=(cite,))
    body = done_body(SummaryEnd(done, "gate", 0.0, 3600.0, cached=False, entries=1))
    assert set(found["summary"]) == set(body)
    assert set(found["summary"]["citations"][0]) == set(cite.as_dict())
    reply = found["gateway.scenes"]
    assert set(reply) == set(merged_reply([], ["b"], ranked=True, limit=1))
    row = reply["scenes"][0]
    assert row["node"] == "a" and all(k.endswith("?node=a") for k in row["keyframes"])
