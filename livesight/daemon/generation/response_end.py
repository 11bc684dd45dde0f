"""How a response ends — the one place, whoever generated it (the model worker in-process, the remote responder over
a model server):

  - its `response.done` event: status, usage, TTFT, the error code of a failure, and the citations of the timeline
    entries recalled into it (`job.recall`; an empty list when nothing was recalled);
  - the TTFT recorded for stats;
  - a watch check: the watch's state (yes/no, held for Home Assistant), and the answer pushed only when it is yes
    (`repeat_yes` False: only when it turns to yes — checks on new frames rather than at a scene change);
  - the answer stored (the event log's responses row, through `on_response`).

`ResponseEnd.finish` runs on the event loop, once per job.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from livesight.daemon.generation.responses import ResponseJob
from livesight.daemon.service import Service
from livesight.model.backend import GenerationResult
from livesight.types import ResponseDelta, ResponseDone, ResponseKind, ResponseStatus

_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)

OnResponse = Callable[[ResponseJob, GenerationResult | None, str], None]  # e.g. the event log's row


def done_event(job: ResponseJob, result: GenerationResult | None, error: str, code: str | None) -> ResponseDone:
    """The job's `response.done`: failed (with the error and its code) without a result, else completed or
    cancelled, with the citations of what was recalled into it."""
    if result is None:
        return ResponseDone(job.response_id, ResponseStatus.FAILED, text="", error=error or "cancelled", code=code)
    status = ResponseStatus.CANCELLED if result.stopped else ResponseStatus.COMPLETED
    return ResponseDone(
        job.response_id,
        status,
        text=result.text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        ttft_ms=round(result.ttft_ms, 2),
        citations=job.recall.citations if job.recall is not None else (),
    )


class ResponseEnd:
    def __init__(self, service: Service, on_response: OnResponse | None = None) -> None:
        self.service = service
        self.on_response = on_response

    def finish(
        self,
        job: ResponseJob,
        result: GenerationResult | None,
        error: str,
        *,
        code: str | None = None,
        repeat_yes: bool = True,
    ) -> None:
        """After a job's generation ended: its done event, TTFT, the watch's state, the event log. `code`: the
        protocol error code of a failure. `repeat_yes` False: a watch is pushed only when its answer turns to yes."""
        done = done_event(job, result, error, code)
        if result is not None:
            self.service.record_ttft(result.ttft_ms)
        delivered = True
        if job.kind is ResponseKind.WATCH:  # pushed only when the answer is yes
            delivered = result is not None and not result.stopped and bool(_YES.match(result.text))
            held = job.watch_id is not None and self.service.watch_holds.get(job.watch_id) is True
            if result is not None and not result.stopped:  # yes or no: the watch's state (Home Assistant)
                self.service.watch_answered(job.watch_id, delivered)
            if held and not repeat_yes:
                delivered = False  # still yes: said already
            if delivered:
                job.sink(job.created_event())
                job.sink(ResponseDelta(job.response_id, result.text))  # type: ignore[union-attr]
        if delivered:
            job.sink(done)
            if self.on_response is not None:
                self.on_response(job, result, error)
