"""The session core on literal messages, with the daemon's real Service and no I/O: what each client message,
service event and broadcast turns into (the WebSocket and MQTT faces only carry these actions out)."""

from __future__ import annotations

import json

from livesight.daemon.service import Service
from livesight.protocols.contract.api import BusyError
from livesight.protocols.contract.session import ClientLimits, QueryRun, Send, SessionCore, StartQuery, StopQuery
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, ResponseStatus


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def core(service: Service | None = None, clock: Clock | None = None, **limits) -> SessionCore:
    return SessionCore(
        service or Service(["cam1", "cam2"]),
        session_id="s1",
        limits=ClientLimits(**limits),
        max_message_bytes=65536,
        send_queue=256,
        clock=clock or Clock(),
    )


def sent(actions) -> list[dict]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [a.event for a in actions]


def test_hello_is_session_created_then_stats() -> None:
    created, stats = sent(core().hello())
    assert created["type"] == "session.created" and created["session"] == {
        "id": "s1",
        "camera": "cam1",
        "proactive": True,
    }
    assert [c["id"] for c in created["cameras"]] == ["cam1", "cam2"] and created["limits"]["send_queue"] == 256
    assert stats["type"] == "stats" and set(stats["cameras"]) == {"cam1", "cam2"}


def test_a_query_starts_then_its_events_become_exactly_one_answer() -> None:
    c = core()
    assert c.receive(json.dumps({"type": "query", "id": "q1", "text": "hi", "camera": "cam2"})) == [
        StartQuery("q1", "cam2", "hi")
    ]
    assert c.query_event("q1", ResponseDelta("r1", "early")) == []  # nothing before created
    (created,) = sent(c.query_event("q1", ResponseCreated("r1", "cam2", ResponseKind.QUERY, query_id="q1")))
    assert created["type"] == "response.created" and created["query_id"] == "q1"
    (delta,) = sent(c.query_event("q1", ResponseDelta("r1", "hello")))
    assert delta == {"type": "response.delta", "response_id": "r1", "delta": "hello", "query_id": "q1", "kind": "query"}
    (done,) = sent(c.query_event("q1", ResponseDone("r1", ResponseStatus.COMPLETED, "hello", 3, 1, ttft_ms=5.0)))
    assert done["status"] == "completed" and done["query_id"] == "q1"
    assert c.query_event("q1", ResponseDelta("r1", "late")) == []  # nothing after done
    assert c.query_closed("q1", cancelled=False) == [] and c.queries == {}


def test_an_answer_that_stops_without_done_gets_one() -> None:
    c = core()
    for qid, cancelled, status in (("a", False, "failed"), ("b", True, "cancelled")):
        c.receive(json.dumps({"type": "query", "id": qid, "text": "hi"}))
        c.query_event(qid, ResponseCreated(f"r{qid}", "cam1", ResponseKind.QUERY, query_id=qid))
        (done,) = sent(c.query_closed(qid, cancelled=cancelled))
        assert done["type"] == "response.done" and done["status"] == status and done["query_id"] == qid
    assert done["error"] is None and not c.queries


def test_service_errors_keep_their_protocol_codes() -> None:
    c = core()
    c.receive(json.dumps({"type": "query", "id": "q1", "text": "hi"}))
    (err,) = sent(c.query_failed("q1", BusyError("too many questions waiting (32); try again shortly")))
    assert err == {
        "type": "error",
        "code": "busy",
        "message": "too many questions waiting (32); try again shortly",
        "event_id": "q1",
        "event_type": "query",
    }
    assert sent(c.query_closed("q1", cancelled=False)) == [] and c.errors == 1
    run = QueryRun("m1", event_type=None)  # the MQTT face leaves event_type null
    assert run.fail(KeyError("boom")) == [
        {"type": "error", "code": "internal_error", "message": "boom", "event_id": "m1", "event_type": None}
    ]


def test_refusals_name_the_offending_event() -> None:
    c = core(max_concurrent_queries=1)
    assert c.receive(json.dumps({"type": "query", "id": "q1", "text": "a"})) == [StartQuery("q1", "cam1", "a")]
    for msg, code in [
        ({"type": "query", "id": "q1", "text": "a"}, "duplicate_id"),
        ({"type": "query", "id": "q2", "text": "a"}, "busy"),
        ({"type": "watch.add", "id": "w1", "text": "a", "camera": "garage"}, "unknown_camera"),
        ({"type": "query.cancel", "id": "nope"}, "unknown_id"),
    ]:
        (err,) = sent(c.receive(json.dumps(msg)))
        assert err["code"] == code and err["event_id"] == msg["id"] and err["event_type"] == msg["type"], err
    (err,) = sent(c.receive("{oops"))
    assert err["code"] == "invalid_json"


async def test_cancel_goes_to_the_service_when_it_knows_the_response() -> None:
    svc = Service(["cam1"])
    c = core(svc)
    c.receive(json.dumps({"type": "query", "id": "q1", "text": "a"}))
    assert c.receive(json.dumps({"type": "query.cancel", "id": "q1"})) == [StopQuery("q1")]  # no response id yet
    answer = svc.query(camera="cam1", text="a", query_id="q1")  # what the adapter runs for StartQuery
    created = await anext(answer)
    c.query_event("q1", created)
    assert c.receive(json.dumps({"type": "query.cancel", "id": created.response_id})) == []  # the service cancels
    done = await anext(answer)
    assert isinstance(done, ResponseDone) and done.status is ResponseStatus.CANCELLED
    (sent_done,) = sent(c.query_event("q1", done))
    assert sent_done["status"] == "cancelled" and len(svc.responses) == 0
    await answer.aclose()


def test_watches_live_in_the_service_while_the_session_lives() -> None:
    svc = Service(["cam1", "cam2"])
    c = core(svc, max_watches=1)
    (added,) = sent(c.receive(json.dumps({"type": "watch.add", "id": "w1", "text": "a door?", "camera": "cam2"})))
    assert added["type"] == "watch.added" and [w.watch_id for w in svc.watches_for("cam2")] == ["s1:w1"]
    (err,) = sent(c.receive(json.dumps({"type": "watch.add", "id": "w2", "text": "a car?"})))
    assert err["code"] == "limit_exceeded"
    (err,) = sent(c.receive(json.dumps({"type": "watch.add", "id": "w1", "text": "   "})))
    assert err["code"] == "invalid_field" and err["event_id"] == "w1"  # the service refused the text
    c.close()
    assert svc.watches == {}


def test_broadcast_routing() -> None:
    c = core()
    c.receive(json.dumps({"type": "watch.add", "id": "w1", "text": "a door?"}))
    other = ResponseCreated("r0", "cam1", ResponseKind.WATCH, watch_id="s2:w9")
    assert c.broadcast(other) == [] and c.broadcast(ResponseDelta("r0", "x")) == []  # someone else's watch
    (hit,) = sent(c.broadcast(ResponseCreated("r1", "cam1", ResponseKind.WATCH, watch_id="s1:w1")))
    assert hit["watch_id"] == "w1"  # the client's own id
    (done,) = sent(c.broadcast(ResponseDone("r1", ResponseStatus.COMPLETED, "yes")))
    assert done["kind"] == "watch" and done["watch_id"] == "w1"
    c.receive(json.dumps({"type": "session.update", "proactive": False}))
    assert c.broadcast(ResponseCreated("r2", "cam1", ResponseKind.PROACTIVE, scene=2)) == []


def test_rate_limit_refuses_beyond_the_burst_then_refills() -> None:
    clock = Clock()
    c = core(clock=clock, rate_per_s=2.0, burst=3)
    msg = json.dumps({"type": "session.update"})
    codes = [sent(c.receive(msg))[0].get("code") for _ in range(4)]
    assert codes == [None, None, None, "rate_limited"]
    clock.t += 0.5  # one message's worth
    assert sent(c.receive(msg))[0]["type"] == "session.updated"
    assert sent(c.receive(msg))[0]["code"] == "rate_limited"
