"""One chaos case: a valid configuration × a set of hostile sources, run on the real daemon (App, real decoding,
the tiny real model, SQLite). What must hold (`run_case` raises AssertionError naming what did not):

- the daemon is alive until stopped, and stops cleanly;
- every camera is live or in a named failure state (with its reason);
- no frame fails on valid input (a resolution change, a truncated file, a one-frame file are valid input);
- a question to each camera is answered (`completed` for the live ones);
- nothing committed is lost: every answer delivered and every scene change published is in the event log.

The case space is a hypothesis strategy, used by the CI test (a few examples) and the `chaos` soak scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from livesight.config import parse_config
from livesight.daemon.app import App
from livesight.types import CameraState, ResponseDone, ResponseStatus, SceneChange
from tests.chaos.media import stalling_server

SOURCES = ("still", "moving", "cuts", "truncated", "reschange", "oneframe", "stall", "missing")
FAILURE_STATES = {CameraState.ENDED, CameraState.FAILED, CameraState.ERROR, CameraState.STALLED}
FAILURE_STATES |= {CameraState.RECONNECTING}


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """A valid configuration (the config checks refuse the rest) over 1-3 hostile sources."""
    n = draw(st.integers(1, 3))
    sources = draw(st.lists(st.sampled_from(SOURCES), min_size=n, max_size=n))
    cameras = []
    for i, src in enumerate(sources):
        cameras.append(
            {
                "id": f"c{i}-{src}",
                "source": src,  # replaced by a path/URL when run
                "sample_fps": draw(st.sampled_from([1.0, 3.0, 6.0])),
                "queue_size": draw(st.sampled_from([1, 4])),
                "loop": draw(st.booleans()),
                "stall_timeout_s": draw(st.sampled_from([None, 1.0])),
                "reconnect": {"initial_s": 0.2, "max_s": 1.0},
            }
        )
    mode = draw(st.sampled_from(["feature", "pixel", "relative", "off"]))
    threshold = {
        "feature": st.sampled_from([0.5, 0.9, 0.99]),
        "pixel": st.sampled_from([0.02, 0.05, 0.2]),
        "relative": st.sampled_from([0.0, 0.5, 0.9]),
        "off": st.just(0.5),
    }[mode]
    dtd = {
        "mode": mode,
        "threshold": draw(threshold),
        "reference": draw(st.sampled_from(["last_kept", "previous"])),
        "pixel_precheck": draw(st.sampled_from([None, 0.02, 0.1])),
        "keyframe_every_s": None if mode == "off" else draw(st.sampled_from([None, 1.0])),
    }
    return {
        "cameras": cameras,
        "model": {"preset": "tiny-random", "max_new_tokens": 6, "image_size": draw(st.sampled_from([112, 224]))},
        "dtd": dtd,
        "memory": {"token_budget": draw(st.sampled_from([256, 1024]))},
        "proactive": {"enabled": draw(st.booleans()), "min_interval_s": 0.0},
        "scenes": {"cut_tap_fps": draw(st.sampled_from([0.0, 10.0]))},  # with and without the decoder's cut tap
        "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 0.5},
    }


@dataclass
class Outcome:
    final_states: dict[str, str] = field(default_factory=dict)
    answers: int = 0
    frames_processed: int = 0
    scenes: int = 0
    rows_checked: int = 0
    stop_s: float = 0.0


async def run_case(case: dict[str, Any], backend: Any, media: dict[str, Path], tmp: Path, seconds: float) -> Outcome:
    """Run one case for `seconds`, check what must hold, stop. Raises AssertionError on a violation."""
    out = Outcome()
    async with contextlib.AsyncExitStack() as stack:
        stall_url = None
        stall_close = None
        if any(c["source"] == "stall" for c in case["cameras"]):
            stall_url, _connections, stall_close = await stack.enter_async_context(stalling_server(media["stallclip"]))
        data = {**case, "memory": {**case["memory"], "database": str(tmp / "events.sqlite")}}
        data["cameras"] = [{**c, "source": _source(c["source"], media, stall_url, tmp)} for c in case["cameras"]]
        cfg = parse_config(data, origin="chaos")
        app = App(cfg, backend=backend)
        task = asyncio.create_task(app.run(), name="chaos-app")
        ready = asyncio.create_task(app.wait_ready(), name="chaos-ready")
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert ready in done, f"the daemon did not start: {task.exception() if task.done() else 'timeout'}"
        svc = app.service
        sub = svc.subscribe(maxsize=100_000)
        answered: set[str] = set()
        try:
            await asyncio.sleep(seconds)
            assert not task.done(), f"the daemon ended by itself: {task.exception()!r}"
            for cam, status in svc.states.items():
                ok = status.state is CameraState.LIVE or (status.state in FAILURE_STATES and status.reason)
                assert ok, f"camera {cam} is {status.state.value} ({status.reason!r}): not live, no named failure"
                k = svc.counters[cam]
                assert k.frames_failed == 0, f"camera {cam}: {k.frames_failed} frames failed on valid input"
                out.frames_processed += k.frames_encoded + k.encoder_skipped
            for cam in svc.camera_ids():  # a question to each camera
                live = svc.states[cam].state is CameraState.LIVE
                done_ev = await _ask(svc, cam)
                assert done_ev is not None, f"camera {cam}: the question got no response.done"
                if live:
                    assert done_ev.status is ResponseStatus.COMPLETED, f"camera {cam}: {done_ev.status} {done_ev.error}"
                if done_ev.status is ResponseStatus.COMPLETED:
                    answered.add(done_ev.response_id)
                    out.answers += 1
            assert not task.done(), f"the daemon ended by itself: {task.exception()!r}"
            out.final_states = {c: s.state.value for c, s in svc.states.items()}
        finally:
            if stall_close is not None:
                stall_close()  # EOF to a blocked reader: the stop need not wait for its socket timeout
            app.stop()
            t0 = time.monotonic()
            async with asyncio.timeout(30):
                await task  # a clean stop: no exception
            out.stop_s = round(time.monotonic() - t0, 2)
        sub.close()
        events = [ev async for ev in sub]
    scenes = {(e.camera, e.scene) for e in events if isinstance(e, SceneChange)}
    answered |= {e.response_id for e in events if isinstance(e, ResponseDone) and e.status is ResponseStatus.COMPLETED}
    out.scenes = len(scenes)
    with contextlib.closing(sqlite3.connect(tmp / "events.sqlite")) as db:
        stored_scenes = set(db.execute("SELECT camera, scene FROM scenes").fetchall())
        stored_responses = {r[0] for r in db.execute("SELECT response_id FROM responses").fetchall()}
    assert scenes <= stored_scenes, f"scene changes lost: {sorted(scenes - stored_scenes)}"
    first = {(c["id"], 1) for c in case["cameras"]}
    assert first <= stored_scenes, f"first scenes not recorded: {sorted(first - stored_scenes)}"
    lost = answered - stored_responses
    assert not lost, f"{len(lost)} answers delivered but not in the event log"
    out.rows_checked = len(scenes | first) + len(answered)
    return out


def _source(kind: str, media: dict[str, Path], stall_url: str | None, tmp: Path) -> str:
    if kind == "stall":
        assert stall_url is not None
        return stall_url
    if kind == "missing":
        return str(tmp / "no-such-camera.ts")
    return str(media[kind])


async def _ask(svc: Any, camera: str) -> ResponseDone | None:
    try:
        async with asyncio.timeout(60):
            async for ev in svc.query(camera=camera, text="What do you see?", query_id=None):
                if isinstance(ev, ResponseDone):
                    return ev
    except TimeoutError:
        return None
    return None


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    states: Counter[str] = Counter()
    for o in outcomes:
        states.update(s for s in o.final_states.values())
    return {
        "cases": len(outcomes),
        "cameras": sum(len(o.final_states) for o in outcomes),
        "final_states": dict(sorted(states.items())),
        "answers": sum(o.answers for o in outcomes),
        "frames_processed": sum(o.frames_processed for o in outcomes),
        "scene_changes": sum(o.scenes for o in outcomes),
        "rows_checked": sum(o.rows_checked for o in outcomes),
        "stop_s_max": max((o.stop_s for o in outcomes), default=0.0),
    }
