"""The generation scheduler's policy, on a fake clock: priorities, bounds, coalescing, shedding, and the share of the
worker generation may take while frames wait."""

from __future__ import annotations

import pytest

from livesight.daemon.generation.queue import (
    CaptionJob,
    GenerationBudget,
    GenerationQueue,
    JobKind,
    kind_of,
)
from livesight.daemon.generation.responses import ResponseJob
from livesight.protocols.contract.api import BusyError
from livesight.types import ResponseEvent, ResponseKind


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def queue(clock: Clock, *, share: float = 0.3, max_queries: int = 4) -> GenerationQueue:
    return GenerationQueue(max_queries, budget=GenerationBudget(share, clock=clock), stale_after_s=3.0, clock=clock)


def job(
    kind: ResponseKind, camera: str = "a", clock: Clock | None = None, sink: list | None = None, **kw
) -> ResponseJob:
    events: list[ResponseEvent] = sink if sink is not None else []
    j = ResponseJob(camera, kind, "?", events.append, **kw)
    if clock is not None:
        j.submitted = clock()
    return j


def test_questions_first_then_proactive_watch_captions() -> None:
    c = Clock()
    q = queue(c)
    q.add_caption("a")
    q.put(job(ResponseKind.WATCH, clock=c, watch_id="w1"))
    q.put(job(ResponseKind.PROACTIVE, clock=c))
    q.put(job(ResponseKind.QUERY, clock=c))
    order = [kind_of(q.next(frames_waiting=False)) for _ in range(4)]  # type: ignore[arg-type]
    assert order == [JobKind.QUERY, JobKind.PROACTIVE, JobKind.WATCH, JobKind.CAPTION]
    assert q.next(frames_waiting=False) is None and len(q) == 0


def test_after_an_answer_waiting_frames_get_the_next_turn() -> None:
    c = Clock()
    q = queue(c)
    q.put(job(ResponseKind.QUERY, clock=c))
    assert q.next(frames_waiting=True, after_answer=True) is None  # frames first
    assert q.next(frames_waiting=True, after_answer=False) is not None


def test_questions_are_bounded_and_refused_with_busy() -> None:
    c = Clock()
    q = queue(c, max_queries=2)
    q.put(job(ResponseKind.QUERY, clock=c))
    q.put(job(ResponseKind.QUERY, clock=c))
    with pytest.raises(BusyError):
        q.put(job(ResponseKind.QUERY, clock=c))
    assert q.refused == 1 and q.active == 2


def test_stale_proactive_messages_are_shed_and_counted_never_announced() -> None:
    c = Clock()
    q = queue(c)
    events: list[ResponseEvent] = []
    old = job(ResponseKind.PROACTIVE, "a", c, events, scene=2)
    q.put(old)
    c.t += 3.5  # not started within stale_after_s (the worker was busy)
    fresh = job(ResponseKind.PROACTIVE, "b", c, events, scene=7)
    q.put(fresh)
    assert q.next(frames_waiting=False) is fresh
    assert q.counters.proactive_shed_stale == 1 and old.done and old.cancel.is_set()
    assert events == [] and q.active == 1  # nobody was told of the shed one; the fresh one is running


def test_a_newer_boundary_supersedes_a_waiting_proactive_message() -> None:
    c = Clock()
    q = queue(c)
    first = job(ResponseKind.PROACTIVE, "a", c, scene=2)
    q.put(first)
    second = job(ResponseKind.PROACTIVE, "a", c, scene=3)
    q.put(second)
    assert q.counters.proactive_shed_superseded == 1 and first.done
    assert q.next(frames_waiting=False) is second and q.next(frames_waiting=False) is None


def test_captions_of_one_camera_merge_while_waiting_and_are_counted() -> None:
    c = Clock()
    q = queue(c)
    for _ in range(3):
        q.add_caption("a")
    q.add_caption("b")
    assert len(q) == 2 and q.counters.captions_queued == 2 and q.counters.captions_merged == 2
    first = q.next(frames_waiting=False)
    assert isinstance(first, CaptionJob) and (first.camera, first.scenes) == ("a", 3)


def test_while_frames_wait_generation_gives_way_past_its_share() -> None:
    c = Clock()
    q = queue(c, share=0.3)
    q.add_caption("a")
    q.spent(JobKind.PROACTIVE, 2.0)  # 2 s of the last 5 s spent generating: over 30%
    c.t += 0.001
    assert q.next(frames_waiting=True) is None  # frames first
    assert q.counters.held_by_budget == 1 and q.counters.captions_deferred == 1
    assert isinstance(q.next(frames_waiting=False), CaptionJob)  # no backlog: the budget does not bind
    q.put(job(ResponseKind.QUERY, clock=c))
    assert q.next(frames_waiting=True) is not None  # questions are never held back


def test_the_share_is_of_every_unit_of_the_worker() -> None:
    """With `model.parallel` 2 the worker has 2 s of time per second: generation on one unit all the time is half."""
    c = Clock()
    one, two = GenerationBudget(0.6, clock=c), GenerationBudget(0.6, units=2, clock=c)
    c.t += 5.0
    for b in (one, two):
        b.spent(5.0)  # one unit generated through the whole window
    assert one.used() == pytest.approx(1.0) and not one.allows()
    assert two.used() == pytest.approx(0.5) and two.allows()
    with pytest.raises(ValueError, match="units"):
        GenerationBudget(0.3, units=0)


def simulate(share: float, seconds: float = 60.0) -> tuple[float, float]:
    """A burst of scene changes: every frame batch declares one on some camera (a proactive message and a caption
    each, 0.1 s of generation), frames always wait (a batch takes 0.05 s). → (frames' share, generation's share)."""
    c = Clock()
    q = queue(c, share=share)
    frames = gen = 0.0
    n = 0
    end = c.t + seconds
    while c.t < end:
        j = q.next(frames_waiting=True)
        if j is not None:
            if not isinstance(j, CaptionJob):
                q.finished(j)
            c.t += 0.1
            q.spent(kind_of(j), 0.1)
            gen += 0.1
            continue
        c.t += 0.05
        q.spent(None, 0.05)
        frames += 0.05
        n += 1
        q.put(job(ResponseKind.PROACTIVE, f"cam{n % 16}", c))
        q.add_caption(f"cam{n % 16}")
    return frames / seconds, gen / seconds


def test_a_burst_of_scene_changes_cannot_starve_frames() -> None:
    frames, gen = simulate(0.3)
    assert gen <= 0.3 + 0.1 / 5 and frames >= 0.68  # within one job of the share, over the 5 s window
    frames_unbounded, _ = simulate(1.0)
    assert frames_unbounded < 0.4  # what a FIFO of generation did: frames waited behind it
