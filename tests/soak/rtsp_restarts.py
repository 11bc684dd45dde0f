"""A real GStreamer RTSP server killed (SIGKILL) and restarted N times mid-stream under the running daemon."""

from __future__ import annotations

import asyncio
import statistics
import time

from livesight.types import CameraState, CameraStatus
from tests.helpers import eventually
from tests.soak.common import Result, answered, app_running, config_dict, make_config
from tests.streaming.test_rtsp import RTSPServer, free_port


async def run(quick: bool) -> Result:
    n = 2 if quick else 10
    res = Result("rtsp_restarts", f"RTSP server (GStreamer, 10 fps) killed with SIGKILL and restarted {n} times")
    server = RTSPServer(free_port())
    server.start()
    cam = {
        "id": "rtsp",
        "source": server.url,
        "sample_fps": 5,
        "reconnect": {"initial_s": 0.2, "max_s": 1.0, "attempts": "forever"},
    }
    cfg = make_config(config_dict([cam]))
    recover_s: list[float] = []
    frames_after: list[int] = []
    try:
        async with app_running(cfg) as (_, handles):
            svc = handles.service
            sub = svc.subscribe(maxsize=10_000)
            states: list[CameraStatus] = []

            async def watch() -> None:
                async for ev in sub:
                    if isinstance(ev, CameraStatus):
                        states.append(ev)

            watcher = asyncio.create_task(watch(), name="soak-rtsp-watch")
            k = svc.counters["rtsp"]

            await eventually(lambda: k.frames_sampled > 5, 30, "first frames")
            for _ in range(n):
                await asyncio.sleep(1.0)  # mid-stream
                server.kill()
                await eventually(lambda: states and states[-1].state is CameraState.RECONNECTING, 30, "reconnecting")
                await asyncio.sleep(0.5)
                before = k.frames_sampled
                t0 = time.monotonic()
                server.start()
                await eventually(lambda before=before: k.frames_sampled > before + 2, 60, "frames again")
                recover_s.append(time.monotonic() - t0)
                await asyncio.sleep(1.0)
                frames_after.append(k.frames_sampled - before)
            ok_answer = await answered(f"ws://127.0.0.1:{handles.port}")
            sub.close()
            await watcher
            health = svc.health()
            res.figures = {
                "restarts": n,
                "reconnects_counted": k.reconnects,
                "recovery_s_median": round(statistics.median(recover_s), 2),
                "recovery_s_max": round(max(recover_s), 2),
                "frames_sampled_total": k.frames_sampled,
                "frames_after_each_restart_min": min(frames_after),
                "state_events": len(states),
            }
            res.check(k.reconnects >= n, f"{k.reconnects} reconnects counted for {n} restarts")
            res.check(min(frames_after) > 0, "frames flowed again after every restart")
            res.check(health["cameras"]["rtsp"]["state"] == "live", "the camera is live at the end")
            res.check(ok_answer, "a question is answered after the last restart")
            res.lost.append(
                "the frames the camera sent while the server was down (nothing to recover: a live stream); "
                f"recovery took {res.figures['recovery_s_median']} s median after the server was back"
            )
    finally:
        if server.proc is not None:
            server.kill()
    return res
