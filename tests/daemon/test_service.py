"""The daemon's service object: broadcast with slow-subscriber policy, bounded response queue, cancel."""

from __future__ import annotations

import asyncio

import pytest

from livesight.daemon.service import MAX_WATCHES, Service
from livesight.protocols.contract.api import BusyError, InvalidRequestError, LimitExceededError, UnknownCameraError
from livesight.types import (
    CameraState,
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseStatus,
    SceneChange,
)


def change(i: int) -> SceneChange:
    return SceneChange("cam", i, float(i), 0.0, 1.0)


async def test_slow_subscriber_is_dropped_fast_one_keeps_everything() -> None:
    svc = Service(["cam"])
    slow = svc.subscribe(maxsize=4)
    fast = svc.subscribe(maxsize=100)
    got: list[int] = []

    async def read_fast() -> None:
        async for ev in fast:
            got.append(ev.scene)
            if len(got) == 10:
                return

    reader = asyncio.create_task(read_fast(), name="fast-reader")
    for i in range(10):
        svc.hub.publish(change(i))
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 2)
    assert got == list(range(10))
    assert slow.overflowed and svc.hub.subscribers_dropped == 1
    drained = [ev.scene async for ev in slow]  # what it had before it was dropped, then the end
    assert drained == [0, 1, 2, 3]
    fast.close()
    assert svc.hub.subscriber_count == 0


async def fake_worker(svc: Service, words: list[str], started: asyncio.Event | None = None) -> None:
    """Stands in for the model worker: answers each job with `words`, honouring cancel between words."""
    while True:
        await svc.responses.wait(1.0)
        job = svc.responses.pop()
        if job is None:
            continue
        if started is not None:
            started.set()
        text = ""
        for w in words:
            if job.cancel.is_set():
                break
            job.sink(ResponseDelta(job.response_id, w))
            text += w
            await asyncio.sleep(0.01)
        status = ResponseStatus.CANCELLED if job.cancel.is_set() else ResponseStatus.COMPLETED
        svc.responses.finished(job)
        job.sink(ResponseDone(job.response_id, status, text=text))


async def test_query_streams_created_deltas_done() -> None:
    svc = Service(["cam"])
    worker = asyncio.create_task(fake_worker(svc, ["a", "b", "c"]), name="fake-worker")
    try:
        events = [ev async for ev in svc.query(camera="cam", text=" hi ", query_id="q1")]
    finally:
        worker.cancel()
    assert isinstance(events[0], ResponseCreated) and events[0].query_id == "q1"
    assert [e.text for e in events if isinstance(e, ResponseDelta)] == ["a", "b", "c"]
    assert isinstance(events[-1], ResponseDone) and events[-1].status is ResponseStatus.COMPLETED


async def test_query_validation_and_bounded_queue() -> None:
    svc = Service(["cam"], response_queue_size=2)
    with pytest.raises(UnknownCameraError, match="unknown camera 'nope'") as e:
        await anext(svc.query(camera="nope", text="x", query_id=None))
    assert e.value.code == "unknown_camera" and str(e.value) == "unknown camera 'nope' (cameras: cam)"
    with pytest.raises(InvalidRequestError, match="empty") as e:
        await anext(svc.query(camera=None, text="  ", query_id=None))
    assert e.value.code == "invalid_field"
    q1 = svc.query(camera=None, text="1", query_id=None)
    q2 = svc.query(camera=None, text="2", query_id=None)
    await anext(q1)
    await anext(q2)
    with pytest.raises(BusyError) as e:
        await anext(svc.query(camera=None, text="3", query_id=None))
    assert e.value.code == "busy" and isinstance(e.value, OverflowError)
    assert svc.responses.refused == 1
    await q1.aclose()  # closing the iterator cancels the queued job and frees its slot
    await q2.aclose()
    assert len(svc.responses) == 0


async def test_cancel_running_query() -> None:
    svc = Service(["cam"])
    started = asyncio.Event()
    worker = asyncio.create_task(fake_worker(svc, ["w"] * 100, started), name="fake-worker")
    try:
        it = svc.query(camera=None, text="long", query_id="q")
        created = await anext(it)
        await started.wait()
        assert svc.cancel(created.response_id)
        rest = [ev async for ev in it]
    finally:
        worker.cancel()
    assert rest[-1].status is ResponseStatus.CANCELLED
    assert len([e for e in rest if isinstance(e, ResponseDelta)]) < 100
    assert not svc.cancel(created.response_id)  # already done


def test_health_reflects_camera_states() -> None:
    svc = Service(["a", "b"])
    assert svc.health()["status"] == "starting"
    svc.ready = True
    svc.set_state(CameraStatus("a", CameraState.LIVE, "", 0.0))
    svc.set_state(CameraStatus("b", CameraState.LIVE, "", 0.0))
    assert svc.health()["status"] == "ok"
    svc.set_state(CameraStatus("b", CameraState.FAILED, "connection refused", 0.0))
    h = svc.health()
    assert h["status"] == "degraded" and h["cameras"]["b"]["reason"] == "connection refused"


async def test_a_node_without_cameras_refuses_with_unknown_camera() -> None:
    """A fleet node that owns no camera idles; a question or watch for "the first camera" is a typed refusal."""
    svc = Service([])
    with pytest.raises(UnknownCameraError, match="this node runs no cameras") as e:
        await anext(svc.query(camera=None, text="anyone?", query_id=None))
    assert e.value.code == "unknown_camera"
    with pytest.raises(UnknownCameraError):
        svc.add_watch(camera=None, text="is it?", watch_id="w1")
    assert svc.responses.active == 0 and svc.watches == {}


def test_health_follows_the_parts_and_lane_errors() -> None:
    svc = Service(["a"])
    svc.ready = True
    svc.set_state(CameraStatus("a", CameraState.LIVE, "", 0.0))
    part = {"state": "running"}
    svc.health_parts["worker"] = lambda: part
    assert svc.health()["status"] == "ok" and svc.health()["worker"] == part
    part["state"] = "stalled"
    assert svc.health()["status"] == "degraded"
    part["state"] = "failed"
    assert svc.health()["status"] == "failed"
    part["state"] = "running"

    def broken() -> dict:
        raise RuntimeError("oops")

    svc.health_parts["event_log"] = broken  # a broken part's check is itself a failure, never a crash
    assert svc.health()["status"] == "failed" and "oops" in svc.health()["event_log"]["reason"]
    del svc.health_parts["event_log"]
    # the worker's verdict on a camera's frames overrides its source state until cleared
    sub = svc.subscribe(maxsize=10)
    svc.set_lane_error("a", "3 frames failed in a row")
    assert svc.states["a"].state is CameraState.ERROR and svc.health()["status"] == "degraded"
    svc.set_state(CameraStatus("a", CameraState.LIVE, "", 1.0))  # the source stays live: error still shown
    assert svc.states["a"].state is CameraState.ERROR
    svc.set_lane_error("a", None)
    assert svc.states["a"].state is CameraState.LIVE and svc.health()["status"] == "ok"
    sub.close()
    published = []
    while not sub._queue.empty():
        published.append(sub._queue.get_nowait())
    assert [e.state for e in published if isinstance(e, CameraStatus)] == [CameraState.ERROR, CameraState.LIVE]


def test_watches() -> None:
    svc = Service(["a", "b"])
    svc.add_watch(camera="b", text="is the door open?", watch_id="w1")
    assert [w.watch_id for w in svc.watches_for("b")] == ["w1"] and svc.watches_for("a") == []
    with pytest.raises(InvalidRequestError):
        svc.add_watch(camera=None, text="", watch_id="w2")
    with pytest.raises(UnknownCameraError):
        svc.add_watch(camera="c", text="is it?", watch_id="w2")
    for i in range(MAX_WATCHES - 1):
        svc.add_watch(camera="a", text="is it?", watch_id=f"x{i}")
    with pytest.raises(LimitExceededError, match=f"at most {MAX_WATCHES} watches") as e:
        svc.add_watch(camera="a", text="one more?", watch_id="w3")
    assert e.value.code == "limit_exceeded"
    assert svc.remove_watch("w1") and not svc.remove_watch("w1")
