"""The pure codec, on literal JSON."""

from __future__ import annotations

import json

import pytest

from livesight.protocols.contract import events as ev
from livesight.protocols.contract.api import StatsSnapshot
from livesight.types import (
    CameraState,
    CameraStatus,
    Citation,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseKind,
    ResponseStatus,
    SceneChange,
)


def test_decode_every_client_message() -> None:
    assert ev.decode_client('{"type":"query","id":"q1","text":" What is happening? "}') == ev.Query(
        id="q1", text="What is happening?", camera=None
    )
    assert ev.decode_client('{"type":"query","id":"q2","text":"hi","camera":"door","event_id":"e7"}') == ev.Query(
        id="q2", text="hi", camera="door", event_id="e7"
    )
    assert ev.decode_client('{"type":"query.cancel","id":"q1"}') == ev.QueryCancel(id="q1")
    assert ev.decode_client('{"type":"watch.add","id":"w1","text":"a person enters"}') == ev.WatchAdd(
        id="w1", text="a person enters"
    )
    assert ev.decode_client(b'{"type":"watch.remove","id":"w1"}'.decode()) == ev.WatchRemove(id="w1")
    assert ev.decode_client('{"type":"session.update","camera":"door","proactive":false}') == ev.SessionUpdate(
        camera="door", camera_set=True, proactive=False
    )
    assert ev.decode_client('{"type":"session.update"}') == ev.SessionUpdate(
        camera=None, camera_set=False, proactive=None
    )
    assert ev.decode_client('{"type":"session.update","camera":null}').camera_set is True


@pytest.mark.parametrize(
    ("raw", "code", "event_id", "needle"),
    [
        ("{not json", "invalid_json", None, "not valid JSON"),
        ("", "invalid_json", None, "not valid JSON"),
        ('{"type":"query","id":"q1","text":NaN}', "invalid_json", None, "NaN"),
        ("[1,2]", "invalid_message", None, "not an array"),
        ('"query"', "invalid_message", None, "not a string"),
        ("{}", "missing_field", None, "'type'"),
        ('{"type":7}', "invalid_message", None, "'type' must be a string"),
        ('{"type":"querry","id":"q9"}', "unknown_type", "q9", "unknown message type 'querry'"),
        ('{"type":"query","id":"q1"}', "missing_field", "q1", "query: missing field 'text'"),
        ('{"type":"query","text":"hi"}', "missing_field", None, "missing field 'id'"),
        ('{"type":"query","id":"q1","text":"hi","colour":"red"}', "invalid_field", "q1", "unknown field 'colour'"),
        ('{"type":"query","id":"q1","text":5}', "invalid_field", "q1", "'text' must be a string"),
        ('{"type":"query","id":"q1","text":"   "}', "invalid_field", "q1", "'text' is empty"),
        ('{"type":"query","id":"bad id!","text":"hi"}', "invalid_field", None, "'id' must be"),
        ('{"type":"query","id":7,"text":"hi","event_id":"e1"}', "invalid_field", "e1", "'id' must be"),
        ('{"type":"query","id":"q1","text":"hi","camera":"../etc"}', "invalid_field", "q1", "'camera'"),
        ('{"type":"session.update","proactive":"yes"}', "invalid_field", None, "'proactive' must be"),
        ('{"type":"watch.add","id":"w1","text":"a\\u0000b"}', "invalid_field", "w1", "NUL"),
    ],
)
def test_decode_errors_are_precise(raw: str, code: str, event_id: str | None, needle: str) -> None:
    with pytest.raises(ev.ProtocolError) as info:
        ev.decode_client(raw)
    err = info.value
    assert err.code == code
    assert err.event_id == event_id
    assert needle in err.message


def test_text_and_id_lengths_are_bounded() -> None:
    ok = json.dumps({"type": "query", "id": "q" * 64, "text": "x" * ev.MAX_TEXT_CHARS})
    assert len(ev.decode_client(ok).text) == ev.MAX_TEXT_CHARS
    with pytest.raises(ev.ProtocolError, match="longer than 2000 characters"):
        ev.decode_client(json.dumps({"type": "query", "id": "q1", "text": "x" * (ev.MAX_TEXT_CHARS + 1)}))
    with pytest.raises(ev.ProtocolError, match="'id' must be 1-64"):
        ev.decode_client(json.dumps({"type": "query", "id": "q" * 65, "text": "hi"}))


def test_binary_and_deep_nesting_are_protocol_errors() -> None:
    with pytest.raises(ev.ProtocolError, match="binary frames"):
        ev.decode_client(b'{"type":"query"}')
    with pytest.raises(ev.ProtocolError) as info:
        ev.decode_client("[" * 100_000 + "]" * 100_000)
    assert info.value.code == "invalid_json"


def test_encode_response_events_literal() -> None:
    created = ResponseCreated("resp_1", "door", ResponseKind.QUERY, query_id="q1")
    assert ev.dumps(ev.encode_response(created)) == (
        '{"type":"response.created","response_id":"resp_1","kind":"query","camera":"door",'
        '"query_id":"q1","watch_id":null,"scene":null,"pts":null}'
    )
    delta = ResponseDelta("resp_1", " a red car")
    assert ev.dumps(ev.encode_response(delta, query_id="q1", kind="query")) == (
        '{"type":"response.delta","response_id":"resp_1","delta":" a red car","kind":"query","query_id":"q1"}'
    )
    done = ResponseDone("resp_1", ResponseStatus.COMPLETED, "a red car", 812, 4, ttft_ms=41.25)
    assert json.loads(ev.dumps(ev.encode_response(done))) == {
        "type": "response.done",
        "response_id": "resp_1",
        "status": "completed",
        "text": "a red car",
        "usage": {"prompt_tokens": 812, "completion_tokens": 4},
        "ttft_ms": 41.25,
        "error": None,
        "citations": [],  # nothing recalled: an empty list, never absent
    }
    failed = ResponseDone("resp_2", ResponseStatus.FAILED, "", error="model crashed", ttft_ms=float("nan"))
    out = json.loads(ev.dumps(ev.encode_response(failed)))
    assert out["status"] == "failed" and out["error"] == "model crashed" and out["ttft_ms"] is None
    watch = ResponseCreated("resp_3", "door", ResponseKind.WATCH, watch_id="sess:w1", scene=4, pts=31.5)
    out = ev.encode_response(watch, watch_id="w1")
    assert out["kind"] == "watch" and out["watch_id"] == "w1" and out["scene"] == 4 and out["pts"] == 31.5


def test_encode_broadcast_literal() -> None:
    scene = SceneChange("door", 3, pts=12.5, wall_time=1700000000.25, score=4.5)
    assert ev.dumps(ev.encode_broadcast(scene)) == (
        '{"type":"scene.change","camera":"door","scene":3,"pts":12.5,"wall_time":1700000000.25,"score":4.5,'
        '"thumbnail":"/api/cameras/door/scenes/3.jpg"}'
    )
    state = CameraStatus("door", CameraState.RECONNECTING, "connection refused", 1700000001.0)
    assert json.loads(ev.dumps(ev.encode_broadcast(state))) == {
        "type": "camera.state",
        "camera": "door",
        "state": "reconnecting",
        "reason": "connection refused",
        "wall_time": 1700000001.0,
    }
    import numpy as np

    stats = StatsSnapshot(
        wall_time=1.0,
        cameras={"door": {"frames_in": np.int64(5), "drop_ratio": np.float32(0.5), "state": "live"}},
        totals={"ttft_ms_median": None, "bad": float("inf"), "pair": (1, 2)},
    )
    assert json.loads(ev.dumps(ev.encode_broadcast(stats))) == {
        "type": "stats",
        "wall_time": 1.0,
        "cameras": {"door": {"frames_in": 5, "drop_ratio": 0.5, "state": "live"}},
        "totals": {"ttft_ms_median": None, "bad": None, "pair": [1, 2]},
    }
    with pytest.raises(TypeError, match="cannot encode"):
        ev.encode_broadcast(object())


def test_encode_session_and_error_literal() -> None:
    out = ev.encode_session_created(
        session_id="sess_1",
        cameras=[{"id": "door", "state": "live", "reason": ""}],
        camera="door",
        proactive=True,
        limits={"max_text_chars": 2000},
    )
    assert out == {
        "type": "session.created",
        "protocol": 1,
        "session": {"id": "sess_1", "camera": "door", "proactive": True},
        "cameras": [{"id": "door", "state": "live", "reason": ""}],
        "limits": {"max_text_chars": 2000},
    }
    err = ev.ProtocolError("busy", "too many", event_id="q1", event_type="query")
    assert ev.dumps(ev.encode_error(err)) == (
        '{"type":"error","code":"busy","message":"too many","event_id":"q1","event_type":"query"}'
    )
    assert ev.dumps({"type": "x", "text": "café ☕"}) == '{"type":"x","text":"café ☕"}'


CITED = Citation(
    "gate", 12, "tl_01J9Z3K8W2Q4V6X8Y0A2B4C6D8", 733.5, 1764946990.25, "/api/timeline/tl_01J/keyframes/0.jpg"
)


def test_response_done_carries_citations() -> None:
    """The timeline entries recalled into an answer, as documented (docs/protocol.md: response.done)."""
    done = ResponseDone("resp_9", ResponseStatus.COMPLETED, "a red van, at 14:03", 40, 6, citations=(CITED,))
    out = json.loads(ev.dumps(ev.encode_response(done, query_id="q1")))
    assert out["citations"] == [
        {
            "camera": "gate",
            "scene": 12,
            "id": "tl_01J9Z3K8W2Q4V6X8Y0A2B4C6D8",
            "pts": 733.5,
            "wall_time": 1764946990.25,
            "thumbnail": "/api/timeline/tl_01J/keyframes/0.jpg",
        }
    ]
    no_thumb = ResponseDone("r", ResponseStatus.COMPLETED, "", citations=(Citation("gate", 1, "tl_1", 0.0, 1.0),))
    assert ev.encode_response(no_thumb)["citations"][0]["thumbnail"] is None
    # a node's malformed citations are skipped (the gateway relays the good ones), never an error
    raw = ev.encode_response(done)
    raw["citations"] = [{"camera": "gate"}, "x", raw["citations"][0], {**raw["citations"][0], "scene": "12"}]
    decoded = ev.decode_response(raw)
    assert isinstance(decoded, ResponseDone) and decoded.citations == (CITED,)
    assert ev.decode_citations({"not": "a list"}) == ()


def test_response_events_decode_back_to_what_was_encoded() -> None:
    """The gateway reads its nodes' answers with decode_response: encode → JSON → decode gives the same event."""
    from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, ResponseStatus

    created = ResponseCreated("r1", "cam1", ResponseKind.WATCH, query_id=None, watch_id="w7", scene=3, pts=12.5)
    delta = ResponseDelta("r1", "a red ")
    done = ResponseDone("r1", ResponseStatus.COMPLETED, "a red car", 5, 3, ttft_ms=41.25, error=None)
    failed = ResponseDone("r2", ResponseStatus.FAILED, "", error="node b went away")
    cited = ResponseDone("r3", ResponseStatus.COMPLETED, "at 14:03", citations=(CITED,))
    for item in (created, delta, done, failed, cited):
        assert ev.decode_response(json.loads(ev.dumps(ev.encode_response(item)))) == item
    assert ev.decode_response({"type": "response.done", "response_id": "r", "status": "nope"}) is None
    hostile = '{"type": "response.done", "response_id": "r", "status": "completed", "usage": {"prompt_tokens": 1e999}}'
    assert ev.decode_response(json.loads(hostile)) is None  # inf tokens: not a well-formed event (no OverflowError)
    assert ev.decode_response({"type": "response.delta"}) is None
    assert ev.decode_response({"type": "scene.change", "response_id": "r"}) is None
