"""Response jobs: queries, proactive messages and watch checks waiting for the model worker (queue.py
schedules them).

A job's events (created → deltas → done) go to `sink`, a callable that runs on the event loop: the asking client's
queue for a query, the broadcast hub for proactive and watch responses. The worker thread hands events over with
`loop.call_soon_threadsafe`, so nothing here blocks the loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livesight.ids import new_id
from livesight.timeline.recall import Recall
from livesight.types import ResponseCreated, ResponseDone, ResponseEvent, ResponseKind, ResponseStatus

TEXT_ONLY_TOKENS = 192  # a text-only job (a summary) may generate at least this many tokens (model.max_new_tokens)


def new_response_id() -> str:
    """Unique across processes, nodes and restarts (ids.py): a gateway's client never sees two answers share one."""
    return new_id("resp_")


@dataclass(eq=False)
class ResponseJob:
    camera: str
    kind: ResponseKind
    prompt: str
    sink: Callable[[ResponseEvent], None]  # called on the event loop
    response_id: str = field(default_factory=new_response_id)
    query_id: str | None = None
    watch_id: str | None = None
    scene: int | None = None
    pts: float | None = None
    submitted: float = field(default_factory=time.perf_counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    # the prompt alone, without the camera's live context: a summary of stored captions (timeline/summary.py). In
    # process a fresh text-only context; over a model server a text-only chat request; at least TEXT_ONLY_TOKENS
    text_only: bool = False
    recall: Recall | None = None  # past timeline entries recalled into a question (its citations end on its done)

    def created_event(self) -> ResponseCreated:
        return ResponseCreated(
            response_id=self.response_id,
            camera=self.camera,
            kind=self.kind,
            query_id=self.query_id,
            watch_id=self.watch_id,
            scene=self.scene,
            pts=self.pts,
        )

    def cancelled_event(self) -> ResponseDone:
        return ResponseDone(self.response_id, ResponseStatus.CANCELLED, text="")
