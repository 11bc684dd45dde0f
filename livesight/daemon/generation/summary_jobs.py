"""A summary of a period (timeline/summary.py) as a response: its generations are text-only jobs in the generation
queue, at the priority of a question, and its events are an answer's (created, deltas, done with citations).

    async for ev in summary_events(summaries, service.responses, "door", start, end):
        ...   # ResponseCreated, ResponseDelta…, then one SummaryEnd (its `done` is the response.done)

Each generation (one, or the chunks then their reduction past the prompt budget) is a ResponseJob with
`text_only=True` (the prompt of captions alone, without the camera's live context: a fresh context in process, a
text-only chat request over a model server, echoed by the echo backend). The client sees one response: the summary's
own id, the deltas of the final generation, then done with the entries it drew on as citations. Closing the iterator
early cancels the generation running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from livesight.daemon.generation.queue import GenerationQueue
from livesight.daemon.generation.responses import ResponseJob, new_response_id
from livesight.errors import contain
from livesight.protocols.contract.api import ServiceError, SummaryEnd, SummaryEvent
from livesight.timeline.summary import OnText, Summaries, Summary
from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseEvent, ResponseKind, ResponseStatus

log = logging.getLogger(__name__)


class GenerationFailed(Exception):
    def __init__(self, error: str, code: str | None) -> None:
        super().__init__(error)
        self.code = code


async def generate_text(queue: GenerationQueue, camera: str, prompt: str, on_text: OnText | None) -> ResponseDone:
    """One text-only generation through the queue (BusyError when the questions waiting are at their bound): its
    done event (completed), or GenerationFailed."""
    events: asyncio.Queue[ResponseEvent] = asyncio.Queue()  # bounded by construction (events_of)
    job = ResponseJob(camera=camera, kind=ResponseKind.QUERY, prompt=prompt, sink=events.put_nowait, text_only=True)
    queue.put(job)
    async with contextlib.aclosing(queue.events_of(job, events)) as stream:
        async for ev in stream:
            if isinstance(ev, ResponseDelta) and on_text is not None:
                on_text(ev.text)
            elif isinstance(ev, ResponseDone):
                if ev.status is ResponseStatus.FAILED:
                    raise GenerationFailed(ev.error or "generation failed", ev.code)
                if ev.status is ResponseStatus.CANCELLED:
                    raise GenerationFailed("cancelled", "cancelled")
                return ev
    raise GenerationFailed("the job ended without a done event", None)  # events_of returns after done only


async def summary_events(
    summaries: Summaries,
    queue: GenerationQueue,
    camera: str,
    start: float,
    end: float,
    *,
    query_id: str | None = None,
) -> AsyncIterator[SummaryEvent]:
    rid = new_response_id()
    out: asyncio.Queue[ResponseDelta | None] = asyncio.Queue()  # bounded: the final generation's deltas, then None
    usage = _Usage(time.perf_counter())

    async def generate(prompt: str, on_text: OnText | None) -> str:
        done = await generate_text(queue, camera, prompt, on_text)
        usage.prompt_tokens += done.prompt_tokens
        usage.completion_tokens += done.completion_tokens
        return done.text

    def delta(text: str) -> None:
        if usage.first_delta is None:
            usage.first_delta = time.perf_counter()
        out.put_nowait(ResponseDelta(rid, text))

    yield ResponseCreated(response_id=rid, camera=camera, kind=ResponseKind.QUERY, query_id=query_id)
    task = asyncio.get_running_loop().create_task(
        summaries.summarize(camera, start, end, generate=generate, on_text=delta), name=f"summary:{rid}"
    )
    task.add_done_callback(lambda _t: out.put_nowait(None))
    try:
        while (ev := await out.get()) is not None:
            yield ev
        yield _end(rid, camera, start, end, task, usage)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(task, return_exceptions=True)


@dataclass
class _Usage:
    """Every generation of one summary together: tokens, and the time to its first streamed word."""

    started: float
    first_delta: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _end(rid: str, camera: str, start: float, end: float, task: asyncio.Task[Summary], usage: _Usage) -> SummaryEnd:
    try:
        s = task.result()
    except GenerationFailed as e:
        done = ResponseDone(rid, ResponseStatus.FAILED, text="", error=str(e), code=e.code)
        return SummaryEnd(done, camera, start, end, cached=False, entries=0)
    except ServiceError as e:  # busy: too many questions waiting
        done = ResponseDone(rid, ResponseStatus.FAILED, text="", error=e.message, code=e.code)
        return SummaryEnd(done, camera, start, end, cached=False, entries=0)
    except Exception as e:  # a bug in one summary fails that summary (its done says why), never the caller
        contain("summary", e, log, f"summary of {camera}")
        why = f"{type(e).__name__}: {e}"
        done = ResponseDone(rid, ResponseStatus.FAILED, text="", error=why, code="internal_error")
        return SummaryEnd(done, camera, start, end, cached=False, entries=0)
    ttft = None if usage.first_delta is None else round((usage.first_delta - usage.started) * 1000, 2)
    done = ResponseDone(
        rid,
        ResponseStatus.COMPLETED,
        text=s.text,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        ttft_ms=ttft,
        citations=s.citations,
    )
    return SummaryEnd(done, camera, start, end, cached=s.cached, entries=s.entries)
