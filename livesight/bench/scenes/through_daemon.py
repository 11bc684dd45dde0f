"""Scene boundaries through the real daemon: `livesight serve` (a subprocess, tiny model) with several suite clips as
file cameras paced in real time, `scene.change` events collected by a real WebSocket client.

Latency per detected cut, on one clock (this machine's): the event's arrival minus the wall time the cut's frame
was delivered (the event's wall_time belongs to the first frame of the new scene, pts `ev.pts`; the cut at `c` was
delivered `ev.pts - c` earlier). It includes sampling, the model worker's queue, DTD, the detector's confirmation
frame and the WebSocket hop.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from livesight.bench.scenes.suite import SuiteClip, score

CONFIG = """
cameras:
{cameras}
model:
  preset: tiny-random
  max_new_tokens: 4
proactive:
  enabled: false
scenes:
  detector: {detector}
memory:
  database: null
server:
  host: 127.0.0.1
  port: 0
  stats_interval_s: 1
"""
GRACE_S = 3.0  # after every camera ended: how long without a scene.change before the run is over
TRANSNET_GRACE_S = 10.0
CAMERA = """  - id: "{id}"
    source: "{path}"
    sample_fps: {fps}
"""


def run_daemon(clips: list[SuiteClip], work: Path, *, fps: float = 2.0, detector: str = "dtd") -> dict[str, Any]:
    """One daemon, one camera per clip; returns per-camera detections and arrival times."""
    cams = "".join(CAMERA.format(id=c.name, path=c.path, fps=fps) for c in clips)
    cfg = work / f"scenes-daemon-{detector}.yaml"
    cfg.write_text(CONFIG.format(cameras=cams, detector=detector))
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        port = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and port is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError("the daemon did not start")
        out = proc.stdout
        # read and drop the daemon's log so its pipe never fills (a full pipe would block the daemon's logging)
        threading.Thread(target=collections.deque, args=(out, 0), name="daemon-log", daemon=True).start()
        limit = max(c.duration for c in clips) + 60
        grace = TRANSNET_GRACE_S if detector == "transnetv2" else GRACE_S
        events, ended, stats = asyncio.run(_collect(port, {c.name for c in clips}, limit, grace))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return {"events": events, "ended": sorted(ended), "stats": stats}


async def _collect(port: int, cameras: set[str], limit: float, grace: float) -> tuple[list[dict], set[str], dict]:
    """Events until every camera has ended, then until `grace` s pass without a scene.change: the worker may still
    hold queued frames, and TransNetV2 reports a cut only after its look-ahead (up to 5.5 s at the defaults)."""
    from websockets.asyncio.client import connect

    events: list[dict] = []
    ended: set[str] = set()
    stats: dict = {}
    quiet_since = math.inf
    async with connect(f"ws://127.0.0.1:{port}", max_size=2**22) as ws:
        try:
            async with asyncio.timeout(limit):
                while time.monotonic() - quiet_since < grace:
                    try:
                        async with asyncio.timeout(0.5):
                            ev = json.loads(await ws.recv())
                    except TimeoutError:
                        continue
                    if ev["type"] == "scene.change":
                        events.append(ev | {"arrived": time.time()})
                        quiet_since = time.monotonic() if ended == cameras else math.inf
                    elif ev["type"] == "camera.state" and ev["state"] == "ended":
                        ended.add(ev["camera"])
                        quiet_since = time.monotonic() if ended == cameras else math.inf
                    elif ev["type"] == "stats":
                        stats = ev
        except TimeoutError:
            pass
    return events, ended, stats


def score_daemon(clips: list[SuiteClip], result: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    for c in clips:
        evs = [e for e in result["events"] if e["camera"] == c.name]
        s = score([e["pts"] for e in evs], c.transitions)
        by_pts = {round(e["pts"], 3): e for e in evs}
        lat = []
        for start, end, found in s["matches"]:
            e = by_pts[round(found, 3)]
            if start == end:
                lat.append(round(e["arrived"] - (e["wall_time"] - (e["pts"] - start)), 3))
        cam = result["stats"].get("cameras", {}).get(c.name, {})
        rows.append(
            {"clip": c.name, "tp": s["tp"], "fp": s["fp"], "fn": s["fn"], "f1": s["f1"]}
            | {"false": s["false"], "missed": s["missed"], "lat_cut": lat}
            | {"frames_dropped": cam.get("frames_dropped")}
        )
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    lat = sorted(x for row in rows for x in row["lat_cut"])
    summary = {
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
        "cut_latency_median_s": lat[len(lat) // 2] if lat else None,
        "cut_latency_max_s": lat[-1] if lat else None,
    }
    return rows, summary
