"""The caption backfill on a real store (SQLite file, JPEG keyframes on disk) with the echo backend describing the
keyframes: newest first, one at a time, a just-closed entry left to its live caption, failures counted and retried
with backoff, an entry whose keyframes are gone retried rarely; and the generation queue offering it last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livesight.daemon.generation.queue import BackfillJob, GenerationBudget, GenerationQueue, InWorker
from livesight.daemon.generation.responses import ResponseJob
from livesight.imaging import encode_jpeg
from livesight.model.echo import EchoBackend
from livesight.timeline.backfill import Backfill
from livesight.timeline.store import TimelineStore
from livesight.types import ResponseKind, TimelineEntry
from tests.timeline.test_store import T0, entry


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(np.kron(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((28, 28, 1), np.uint8)))


def add(store: TimelineStore, scene: int, start: float, frames: int = 2) -> TimelineEntry:
    e = entry("door", scene, start, start + 10, frames=frames)
    store.add_entry(e, [picture(scene * 10 + i) for i in range(frames)])
    return e


def echo_describe(images: list[np.ndarray], times: list[float], prompt: str) -> str:
    assert all(i.ndim == 3 for i in images) and len(times) == len(images)
    return EchoBackend().describe(images, prompt, max_new_tokens=40, times=times).text


def caption_of(store: TimelineStore, e: TimelineEntry) -> str | None:
    got = store.get(e.id)
    assert got is not None
    return got.caption


def test_newest_first_one_at_a_time_until_the_backlog_is_empty(store: TimelineStore) -> None:
    entries = [add(store, s, T0 + 20 * s) for s in range(1, 5)]
    store.flush()
    clock = Clock(T0 + 1000)
    b = Backfill(store, clock=clock)
    b.refresh()
    assert b.backlog == 4
    order = []
    while (e := b.peek()) is not None:
        b.take(e)
        assert b.peek() is None or b.peek().id != e.id  # taken: not offered twice
        assert b.caption(e, echo_describe) is not None
        order.append(e.id)
        store.flush()
        b.refresh()
    assert order == [e.id for e in reversed(entries)]  # newest first
    assert b.backlog == 0 and b.backfilled == 4 and store.backlog() == 0
    for e in entries:  # the echo model says what it was given: the entry's 2 keyframes, after the camera and times
        text = caption_of(store, e)
        assert text is not None and text.startswith("I hold 2 frames") and "Camera door, scene" in text
    assert b.health() == {"backlog": 0, "backfilled": 4, "failed": 0, "in_flight": 0, "waiting_retry": 0}


def test_a_just_closed_entry_waits_for_its_live_caption(store: TimelineStore) -> None:
    e = add(store, 1, T0)
    store.flush()
    clock = Clock(T0 + 10 + 5)  # closed 5 s ago
    b = Backfill(store, grace_s=30.0, clock=clock)
    b.refresh()
    assert b.backlog == 1 and b.peek() is None
    clock.t += 30
    assert b.peek() == e


def test_a_failure_is_counted_and_retried_with_backoff(store: TimelineStore) -> None:
    e = add(store, 1, T0)
    store.flush()
    clock = Clock(T0 + 1000)
    b = Backfill(store, retry_s=10.0, retry_max_s=25.0, clock=clock)
    b.refresh()
    calls = 0

    def failing(images: Any, times: Any, prompt: str) -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("the model is away")

    for wait in (10.0, 20.0, 25.0):  # doubling, capped
        got = b.peek()
        assert got is not None and got.id == e.id
        b.take(got)
        assert b.caption(got, failing) is None
        store.flush()
        b.refresh()
        assert b.peek() is None  # waits out its backoff
        clock.t += wait - 0.5
        assert b.peek() is None
        clock.t += 0.5
    assert calls == 3 and b.failed == 3 and store.counters()["caption_failures"] == 3
    assert b.health()["waiting_retry"] == 0 and b.peek() is not None
    b.take(e)
    assert b.caption(e, echo_describe) is not None  # the model is back
    store.flush()
    assert store.backlog() == 0 and b.backfilled == 1


def test_an_entry_whose_keyframes_are_gone_is_retried_rarely(store: TimelineStore, tmp_path: Path) -> None:
    e = add(store, 1, T0)
    store.flush()
    assert store.dir is not None
    for p in (store.dir / "door").glob(f"{e.id}-*.jpg"):
        p.unlink()  # retention, or a disk that lost them
    clock = Clock(T0 + 1000)
    b = Backfill(store, retry_s=10.0, retry_max_s=600.0, clock=clock)
    b.refresh()
    got = b.peek()
    assert got is not None
    b.take(got)
    assert b.caption(got, echo_describe) is None and b.failed == 1
    clock.t += 599
    assert b.peek() is None


async def test_caption_async_sends_the_jpegs_with_their_labels(store: TimelineStore) -> None:
    e = add(store, 1, T0, frames=3)
    store.flush()
    b = Backfill(store, clock=Clock(T0 + 1000))
    b.refresh()
    seen: list[Any] = []

    async def describe(jpegs: list[bytes], labels: list[str], prompt: str, intro: str) -> str:
        seen.append((jpegs, labels, prompt, intro))
        return "  a van   arrives \n"

    b.take(e)
    assert await b.caption_async(e, describe) == "a van arrives"
    jpegs, labels, prompt, intro = seen[0]
    assert [j[:2] for j in jpegs] == [b"\xff\xd8"] * 3 and len(labels) == 3 and "(first)" in labels[0]
    assert intro.startswith("Camera door, scene 1") and prompt.startswith("Describe")
    store.flush()
    assert caption_of(store, e) == "a van arrives" and b.in_flight == 0


class Source:
    """A BackfillSource with one job."""

    def __init__(self) -> None:
        self.job: BackfillJob | None = BackfillJob("door", "tl_x", InWorker(lambda: None))
        self.taken: list[BackfillJob] = []

    def next_job(self) -> BackfillJob | None:
        return self.job

    def started(self, job: BackfillJob) -> None:
        self.taken.append(job)
        self.job = None


def test_the_queue_offers_backfill_last_and_only_with_spare_share() -> None:
    clock = Clock(0.0)
    q = GenerationQueue(4, budget=GenerationBudget(0.1, window_s=10.0, clock=clock), clock=clock)
    q.backfill = src = Source()
    q.add_caption("door")
    job = q.next(frames_waiting=False)
    assert job is not None and job.kind.name == "CAPTION"  # a live caption first
    q.spent(job.kind, 5.0)  # generation took half the worker's time
    clock.t = 6.0
    assert q.next(frames_waiting=True) is None  # frames wait and the share is spent: no backfill
    assert q.pop() is None and src.taken == []  # (pop never offers it: the remote responder asks itself)
    got = q.next(frames_waiting=False)  # the box keeps up: spare
    assert isinstance(got, BackfillJob) and src.taken == [got] and q.counters.backfill_started == 1
    assert q.next(frames_waiting=False) is None


def test_a_question_waiting_goes_before_backfill() -> None:
    q = GenerationQueue(4)
    q.backfill = Source()
    job = ResponseJob(camera="door", kind=ResponseKind.QUERY, prompt="what?", sink=lambda ev: None)
    q.put(job)
    assert q.next(frames_waiting=False) is job
    assert isinstance(q.next(frames_waiting=False), BackfillJob)


@pytest.mark.slow  # loads the tiny model
def test_the_tiny_model_describes_stills_without_touching_a_live_context() -> None:
    from tests.helpers import tiny_backend

    backend = tiny_backend()
    live = backend.new_context()
    before = live.n_tokens
    pics = [np.full((448, 448, 3), v, np.uint8) for v in (30, 200)]
    r = backend.describe(pics, "Describe what happened in this scene.", max_new_tokens=4, times=[10.0, 12.5])
    assert r.completion_tokens >= 1 and r.prompt_tokens > 0
    assert live.n_tokens == before
