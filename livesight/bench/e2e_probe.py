"""Cut → first proactive token in the daemon of whichever checkout is on PYTHONPATH; prints one JSON object.

`livesight bench e2e` runs it for this checkout and, with `--baseline DIR`, for another one, in turns; so it uses only
what every checkout has (App, the event hub, Service.query) and measures from outside the pipeline:

- builtin:demo paced in real time has a hard cut every SCENE_S seconds of its stream time. A scene change carries
  the pts of the frame that starts its scene and that frame's decode wall time; the cut's own wall time is that
  minus (pts - the cut's pts). Latency: the first `response.delta` of the scene's proactive message minus that.
- a question every 3 s runs alongside (answer decode speed, and a busy worker now and then).
- where the checkout records them (`ModelWorker.proactive_timings`), the latency's parts.

    PYTHONPATH=DIR python -m livesight.bench.e2e_probe --seconds 40        (or by path, with DIR's livesight)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

SCENE_S = 5.0  # builtin:demo's cut period (stream time)


def config(device: str) -> Any:
    from livesight.config import parse_config

    return parse_config(
        {
            "cameras": [{"id": "demo", "source": "builtin:demo", "sample_fps": 2}],
            "model": {"preset": "tiny-random", "max_new_tokens": 32, "device": device},
            "memory": {"token_budget": 4096, "database": None},
            "proactive": {"enabled": True, "min_interval_s": 0.0},
            "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 1.0},
        },
        origin="bench",
    )


async def probe(seconds: float, device: str, shape: str = "tiny") -> dict[str, Any]:
    from livesight.daemon.app import App
    from livesight.types import ResponseCreated, ResponseDelta, ResponseDone, ResponseKind, SceneChange

    backend = None
    if shape != "tiny":  # a random-weight model of a real model's shape (bench dtd's)
        from livesight.bench.dtd import build_backend

        backend = build_backend(device, shape)
    app = App(config(device), backend=backend)
    lat_ms: list[float] = []
    late = 0  # scene changes more than a second from any cut (none expected)
    tps: list[float] = []
    async with asyncio.TaskGroup() as tg:
        tg.create_task(app.run(), name="probe-app")
        handles = await app.wait_ready()
        sub = handles.service.subscribe(maxsize=10_000)
        cut_wall: dict[int, float] = {}
        pending: dict[str, float] = {}

        async def watch() -> None:
            nonlocal late
            async for ev in sub:
                if isinstance(ev, SceneChange):
                    cut = round(ev.pts / SCENE_S) * SCENE_S
                    if abs(ev.pts - cut) > 1.0:
                        late += 1
                        continue
                    cut_wall[ev.scene] = ev.wall_time - (ev.pts - cut)
                elif isinstance(ev, ResponseCreated) and ev.kind is ResponseKind.PROACTIVE and ev.scene in cut_wall:
                    pending[ev.response_id] = cut_wall[ev.scene]
                elif isinstance(ev, ResponseDelta) and ev.response_id in pending:
                    lat_ms.append((time.time() - pending.pop(ev.response_id)) * 1000)

        async def ask() -> None:
            while True:
                t0 = time.perf_counter()
                first = None
                async for ev in handles.service.query(camera=None, text="What is happening?", query_id=None):
                    if isinstance(ev, ResponseDelta) and first is None:
                        first = time.perf_counter()
                    if isinstance(ev, ResponseDone) and first is not None and ev.completion_tokens > 1:
                        tps.append((ev.completion_tokens - 1) / max(1e-6, time.perf_counter() - first))
                await asyncio.sleep(max(0.0, 3.0 - (time.perf_counter() - t0)))

        w = tg.create_task(watch(), name="probe-watch")
        a = tg.create_task(ask(), name="probe-ask")
        await asyncio.sleep(seconds)
        a.cancel()
        sub.close()
        await w
        timings = list(getattr(app.worker, "proactive_timings", []))
        sampled = [k.frames_sampled for k in handles.service.counters.values()]
        events = [getattr(k, "frames_sampled_event", 0) for k in handles.service.counters.values()]
        taps = [getattr(lane.detector, "tap_cuts", None) for lane in getattr(app.worker, "lanes", {}).values()]
        taken = [t.taken for t in taps if hasattr(t, "taken")]  # checkouts without the counter: None
        app.stop()
    parts = [p for p in (t.parts_ms() for t in timings) if p is not None]
    return {
        "latencies_ms": [round(x, 1) for x in lat_ms],
        "late_scene_changes": late,
        "answer_tokens_per_s": [round(x, 1) for x in tps],
        "parts_ms": parts,
        "frames_sampled": sum(sampled),
        "frames_sampled_event": sum(events),
        "tap_takes": sum(taken) if taken else None,
        "scene_changes": len(cut_wall),
        "seconds": seconds,
    }


def summary(latencies: list[float]) -> dict[str, float | int | None]:
    return {
        "cuts_measured": len(latencies),
        "median_ms": round(statistics.median(latencies), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", default="tiny")
    args = p.parse_args()
    print(json.dumps(asyncio.run(probe(args.seconds, args.device, args.shape))))


if __name__ == "__main__":
    main()
