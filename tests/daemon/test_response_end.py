"""daemon/generation/response_end.py: the one place a response ends, for the model worker and the remote responder
alike."""

from __future__ import annotations

from livesight.daemon.generation.response_end import ResponseEnd
from livesight.daemon.generation.responses import ResponseJob
from livesight.daemon.service import Service
from livesight.model.backend import GenerationResult
from livesight.timeline.recall import Recall
from livesight.types import Citation, ResponseDelta, ResponseDone, ResponseEvent, ResponseKind, ResponseStatus

CITE = Citation("cam", 7, "tl_1", 12.0, 1_800_000_000.0, "/api/timeline/tl_1/keyframes/0.jpg")


def job(kind: ResponseKind, events: list[ResponseEvent], **kw: object) -> ResponseJob:
    return ResponseJob("cam", kind, "q", events.append, **kw)  # type: ignore[arg-type]


def test_a_question_ends_with_its_citations_ttft_and_stored_answer() -> None:
    service = Service(["cam"])
    stored: list[tuple[str, str]] = []
    end = ResponseEnd(service, lambda j, r, e: stored.append((j.response_id, r.text if r else e)))
    events: list[ResponseEvent] = []
    recalled = job(
        ResponseKind.QUERY, events, recall=Recall(lines=("[x] a van",), citations=(CITE,), entry_ids=("tl_1",))
    )
    end.finish(recalled, GenerationResult("a van came", 30, 3, 12.5, False), "")
    plain = job(ResponseKind.QUERY, events)
    end.finish(plain, GenerationResult("nothing", 10, 1, 7.0, False), "")
    failed = job(ResponseKind.QUERY, events, recall=Recall(lines=("[x] a van",), citations=(CITE,), entry_ids=("x",)))
    end.finish(failed, None, "model crashed", code="model_unavailable")
    done = [e for e in events if isinstance(e, ResponseDone)]
    assert [d.citations for d in done] == [(CITE,), (), ()]  # a failed answer cites nothing
    assert done[0].status is ResponseStatus.COMPLETED and done[0].ttft_ms == 12.5
    assert done[2].status is ResponseStatus.FAILED and done[2].code == "model_unavailable"
    assert service.ttft_ms == [12.5, 7.0]
    assert stored == [
        (recalled.response_id, "a van came"),
        (plain.response_id, "nothing"),
        (failed.response_id, "model crashed"),
    ]


def test_a_watch_is_pushed_only_on_yes_and_its_state_held() -> None:
    service = Service(["cam"])
    service.add_watch(camera="cam", text="a person?", watch_id="w1")
    end = ResponseEnd(service)
    events: list[ResponseEvent] = []
    end.finish(job(ResponseKind.WATCH, events, watch_id="w1"), GenerationResult("No.", 5, 1, 3.0, False), "")
    assert events == [] and service.watch_holds["w1"] is False
    yes = job(ResponseKind.WATCH, events, watch_id="w1")
    end.finish(yes, GenerationResult("Yes, one.", 5, 2, 3.0, False), "")
    assert [type(e) for e in events] == [type(yes.created_event()), ResponseDelta, ResponseDone]
    assert service.watch_holds["w1"] is True
    events.clear()
    end.finish(
        job(ResponseKind.WATCH, events, watch_id="w1"), GenerationResult("yes", 5, 1, 3.0, False), "", repeat_yes=False
    )
    assert events == []  # still yes: said already
