"""`livesight demo`: prints what the daemon does, as a subscriber of the running service would see it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TextIO

from livesight.protocols.contract.api import StatsSnapshot
from livesight.types import (
    CameraSnapshot,
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseKind,
    SceneChange,
)

ASK_EVERY_S = 8.0


def _p(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)


async def print_demo(app: object, question: str, out: TextIO = sys.stdout) -> None:
    handles = await app.wait_ready()  # type: ignore[attr-defined]
    service = handles.service
    info = service.model_info
    host = app.cfg.server.host  # type: ignore[attr-defined]
    _p(
        out,
        f"livesight demo: model {info.get('name')} on {info.get('device')}"
        + (
            " — RANDOM WEIGHTS: answers are meaningless text; DTD, scenes, memory, latency are real"
            if info.get("random_weights")
            else ""
        ),
    )
    _p(out, f"  chat page: http://{host}:{handles.port}/   terminal: livesight chat ws://{host}:{handles.port}")
    _p(out, "  Ctrl-C to stop.")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_ask_loop(service, question, out), name="demo-ask")
        tg.create_task(_events(service, out), name="demo-events")


async def _events(service: object, out: TextIO) -> None:
    sub = service.subscribe(maxsize=1000)  # type: ignore[attr-defined]
    proactive: dict[str, str] = {}
    try:
        async for ev in sub:
            if isinstance(ev, StatsSnapshot):  # the event says when; the typed snapshots say what
                for cam, snap in service.snapshots().items():  # type: ignore[attr-defined]
                    _p(out, _stats_line(cam, snap))
            elif isinstance(ev, SceneChange):
                _p(out, f"[scene] {ev.camera}: scene {ev.scene} starts at {ev.pts:.1f}s (score {ev.score:.2f})")
            elif isinstance(ev, CameraStatus):
                _p(out, f"[camera] {ev.camera}: {ev.state.value}" + (f" ({ev.reason})" if ev.reason else ""))
            elif isinstance(ev, ResponseCreated) and ev.kind is not ResponseKind.QUERY:
                proactive[ev.response_id] = f"{ev.kind.value} about scene {ev.scene}"
            elif isinstance(ev, ResponseDone) and ev.response_id in proactive:
                what = proactive.pop(ev.response_id)
                _p(out, f"[{what}] {ev.text!r} (ttft {ev.ttft_ms} ms)")
    finally:
        sub.close()


def _stats_line(cam: str, s: CameraSnapshot) -> str:
    return (
        f"[stats] {cam}: {s.state} frames in {s.frames_in}, sampled {s.frames_sampled}, dropped {s.frames_dropped}, "
        f"tokens kept {s.tokens_kept}/{s.tokens_total} (DTD drop ratio {s.drop_ratio:.1%}), "
        f"encoder skipped {s.encoder_skipped}, frame {s.frame_ms_median} ms"
        + (f", FAILED frames {s.frames_failed}" if s.frames_failed else "")
    )


async def _ask_loop(service: object, question: str, out: TextIO) -> None:
    await asyncio.sleep(3.0)
    while True:
        parts: list[str] = []
        with contextlib.suppress(OverflowError):
            async for ev in service.query(camera=None, text=question, query_id=None):  # type: ignore[attr-defined]
                if isinstance(ev, ResponseDelta):
                    parts.append(ev.text)
                elif isinstance(ev, ResponseDone):
                    _p(
                        out,
                        f"[answer] Q: {question!r} → {''.join(parts)!r} "
                        f"({ev.status.value}, ttft {ev.ttft_ms} ms, {ev.completion_tokens} tokens)",
                    )
        await asyncio.sleep(ASK_EVERY_S)
