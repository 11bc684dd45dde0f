"""`livesight bench remote`: feeding a remote vision server only what changed, against the two ways others feed one.

Part 1, the feed (no server needed). Each clip is decoded at TRUTH_FPS, prepared at 448² area as the daemon does,
and looped to LOOP_S seconds (a looped clip is a camera; each loop start is a cut). Three ways to keep a server
informed, in one run over the same frames:
  fixed_1fps   every sampled second, the whole frame, one request each (a fixed-rate sampler)
  vss_chunks   every 30 s chunk, 8 whole frames evenly spaced, one request at the chunk's end (NVIDIA VSS style)
  ours         the daemon's path with the openai backend's defaults (1 sampled fps, pixel-mode DTD at tau
               REMOTE_DTD_THRESHOLD with no encoder, the dtd scene detector with its cut tap, the feed gate of
               remote_images.FeedGate within model.image_tokens_per_min): a scene's first frame whole, crops of
               changed regions, whole frames when most of the frame changed; one request per frame with news
  ours_2fps    the same at 2 sampled fps;  ours_no_budget: the same at 1 fps without the token budget
Ground truth, measured on the TRUTH_FPS frames independently of every method:
  change       a truth frame where some 28x28 region's mean absolute change vs the previous truth frame is >= TRUTH_PX
               (0-1 scale); it is recalled when, within 1 s, the server gets an image taken at or after it that
               covers at least half of the changed regions (a whole frame covers all)
  cut          a known hard cut (Megamind.avi, bikes.mp4: frames found by PySceneDetect; builtin:demo: every 5 s) or
               a loop start; recalled when a whole frame taken at or after it reaches the server within 1 s
Costs per camera-hour: image tokens (~ pixels/784 + 2 per image, as Qwen2.5-VL bills), images and requests.

Part 2, TTFT against the real llama.cpp server (llama_server.py; skipped when llama-cpp-python[server] is absent):
a camera's remote memory after 1 and after 60 minutes of builtin:demo (simulated time: frames fed as fast as they
are processed, both ending at the same point of the demo's 25-s scene cycle; scene captions are filled in locally,
~60 characters each, since asking 720 of them would take the server longer than the benchmark), the same question
asked alternately of both after one warm-up each, so each request is a cold prefix for llama.cpp's one slot.

Part 3, a server down for a minute (the stub server of model_stub.py, real HTTP): the daemon on builtin:demo, a
question every few seconds; frames dropped by ingest, questions answered or refused with a code within the timeout,
seconds from the server's return to the next answer.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livesight.bench.clips import real_clips
from livesight.config import REMOTE_DTD_THRESHOLD, DTDConfig, RemoteModelSettings, SceneConfig, parse_config
from livesight.daemon.scene_detectors import dtd_detector
from livesight.memory.remote_images import FeedGate, planned_tokens
from livesight.model.dtd import DTD, region_diff
from livesight.model.vision_input import prepare
from livesight.streaming.demo_stream import SCENE_S, demo_frames
from livesight.streaming.sampler import Sampler, sample_video

TRUTH_FPS = 5.0
TRUTH_PX = 0.04
LOOP_S = 120.0
RECALL_S = 1.0
VSS_CHUNK_S, VSS_FRAMES = 30.0, 8
IMAGE_SIZE = 448
TAU = REMOTE_DTD_THRESHOLD  # the openai backend's defaults
TOKENS_PER_MIN = RemoteModelSettings.model_fields["image_tokens_per_min"].default
CUT_FRAMES = {"Megamind.avi": (99, 155, 201), "bikes.mp4": (30, 76, 137, 187, 242)}  # DESIGN.md §8
CLIP_KIND = {"vtest.avi": "static camera", "Megamind.avi": "busy, cuts", "bikes.mp4": "busy, cuts", "demo": "demo"}


@dataclass(frozen=True, slots=True)
class Delivery:
    capture: float  # stream time of the frame
    at: float  # when it reaches the server
    cells: np.ndarray | None  # [gh*gw] bool: the regions it shows (None: the whole frame)
    tokens: int
    images: int


# ---- clips ------------------------------------------------------------------------------------------------------


def clip_frames(name: str, loop_s: float) -> tuple[list[tuple[float, np.ndarray]], list[float]]:
    """(pts, prepared frame) at TRUTH_FPS looped to loop_s, and the cut times (known cuts + loop starts)."""
    if name == "demo":
        frames = []
        for t, rgb in demo_frames():
            if t >= loop_s:
                break
            if round(t * 10) % round(10 / TRUTH_FPS) == 0:
                frames.append((t, prepare(rgb, IMAGE_SIZE)))
        return frames, [k * SCENE_S for k in range(1, int(loop_s / SCENE_S) + 1) if k * SCENE_S < loop_s]
    path = real_clips()[name]
    once = [(s.pts, prepare(s.rgb, IMAGE_SIZE)) for s in sample_video(path, TRUTH_FPS)]
    fps = _native_fps(path)
    cuts_once = [f / fps for f in CUT_FRAMES.get(name, ())]
    length = once[-1][0] + 1.0 / TRUTH_FPS
    frames, cuts = [], []
    k = 0
    while k * length < loop_s:
        off = k * length
        frames += [(off + t, f) for t, f in once if off + t < loop_s]
        cuts += [off + c for c in cuts_once if off + c < loop_s] + ([off] if k else [])
        k += 1
    return frames, sorted(cuts)


def _native_fps(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
        return float(rate) if rate else 25.0


def truth_changes(frames: list[tuple[float, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
    out = []
    for (_, a), (t, b) in itertools.pairwise(frames):
        if a.shape != b.shape:
            continue
        changed = region_diff(b, a) >= TRUTH_PX
        if changed.any():
            out.append((t, changed))
    return out


# ---- the methods ----------------------------------------------------------------------------------------------


def _whole(t: float, at: float, grid: tuple[int, int]) -> Delivery:
    return Delivery(t, at, None, grid[0] * grid[1] + 2, 1)


def _grid(f: np.ndarray) -> tuple[int, int]:
    return (f.shape[0] // 28, f.shape[1] // 28)


def fixed_rate(frames: list[tuple[float, np.ndarray]], fps: float = 1.0) -> list[Delivery]:
    s = Sampler(fps)
    return [_whole(t, t, _grid(f)) for t, f in frames if s.take(t)]


def vss_chunks(frames: list[tuple[float, np.ndarray]], duration: float) -> list[Delivery]:
    out = []
    times = np.array([t for t, _ in frames])
    k = 0
    while (k + 1) * VSS_CHUNK_S <= duration + 1e-6:
        start, end = k * VSS_CHUNK_S, (k + 1) * VSS_CHUNK_S
        for i in range(VSS_FRAMES):
            want = start + VSS_CHUNK_S * i / (VSS_FRAMES - 1) * (1 - 1e-9)
            j = min(int(np.searchsorted(times, want)), len(frames) - 1)
            out.append(_whole(frames[j][0], end, _grid(frames[j][1])))
        k += 1
    return out


def ours(
    frames: list[tuple[float, np.ndarray]], fps: float, *, tau: float = TAU, tokens_per_min: int = TOKENS_PER_MIN
) -> list[Delivery]:
    """The daemon's remote path on these frames: DTD (pixel, no encoder) → scene detector → feed gate."""
    sampler = Sampler(fps)
    dtd = DTD(DTDConfig(mode="pixel", threshold=tau), 28, encoder=False)
    det, tap = dtd_detector(SceneConfig(), "bench", sample_fps=fps, dtd_mode="pixel")
    gate = FeedGate(full_fraction=0.4, max_crops=6, tokens_per_min=tokens_per_min)
    out = []
    for t, p in frames:
        if tap is not None:
            tap.offer(t, p)  # the cut tap sees every truth frame (the daemon's sees the decoder's at 10 fps)
        if not sampler.take(t):
            continue
        dtd.precheck(p, t)
        step = dtd.decide("bench", t, 0.0, p, None)
        if det.update(step, p) is not None:
            gate.scene_started()  # the daemon closes the scene before the frame goes in
        plan = gate.plan(step.keep, step.grid_hw, t, whole=step.full)
        if plan is False:
            continue
        if plan is None:
            out.append(_whole(t, t, step.grid_hw))
            continue
        cells = np.zeros(step.grid_hw, bool)
        for r0, c0, r1, c1 in plan:  # type: ignore[union-attr]
            cells[r0:r1, c0:c1] = True
        out.append(Delivery(t, t, cells.reshape(-1), planned_tokens(plan, step.grid_hw), len(plan)))  # type: ignore[arg-type]
    return out


# ---- scoring --------------------------------------------------------------------------------------------------


def change_recall(changes: list[tuple[float, np.ndarray]], deliveries: list[Delivery]) -> float:
    if not changes:
        return 1.0
    by_capture = sorted(deliveries, key=lambda d: d.capture)
    caps = np.array([d.capture for d in by_capture])
    hit = 0
    for t, cells in changes:
        i = int(np.searchsorted(caps, t - 1e-6))
        need = max(1, int(np.ceil(cells.sum() / 2)))
        while i < len(by_capture) and by_capture[i].capture <= t + RECALL_S:
            d = by_capture[i]
            if d.at <= t + RECALL_S and (d.cells is None or int((d.cells & cells).sum()) >= need):
                hit += 1
                break
            i += 1
    return hit / len(changes)


def cut_recall(cuts: list[float], deliveries: list[Delivery]) -> float:
    if not cuts:
        return 1.0
    wholes = [d for d in deliveries if d.cells is None]
    return sum(any(c - 1e-6 <= d.capture and d.at <= c + RECALL_S for d in wholes) for c in cuts) / len(cuts)


def score(name: str, method: str, deliveries: list[Delivery], duration: float, truth: dict[str, Any]) -> dict:
    per_h = 3600.0 / duration
    return {
        "clip": name,
        "kind": CLIP_KIND[name],
        "method": method,
        "image_tokens_per_h": round(sum(d.tokens for d in deliveries) * per_h),
        "images_per_h": round(sum(d.images for d in deliveries) * per_h),
        "requests_per_h": round(len({d.at for d in deliveries}) * per_h),
        "change_recall": round(change_recall(truth["changes"], deliveries), 4),
        "cut_recall": round(cut_recall(truth["cuts"], deliveries), 4),
    }


def feed_part(loop_s: float) -> list[dict[str, Any]]:
    rows = []
    names = [n for n in ("vtest.avi", "Megamind.avi", "bikes.mp4") if n in real_clips()] + ["demo"]
    for name in names:
        frames, cuts = clip_frames(name, loop_s)
        duration = frames[-1][0] + 1.0 / TRUTH_FPS
        truth = {"changes": truth_changes(frames), "cuts": cuts}
        base = fixed_rate(frames)
        for method, deliveries in (
            ("fixed_1fps", base),
            ("vss_chunks", vss_chunks(frames, duration)),
            ("ours", ours(frames, 1.0)),  # the defaults: 1 fps, pixel tau REMOTE_DTD_THRESHOLD, the token budget
            ("ours_2fps", ours(frames, 2.0)),
            ("ours_no_budget", ours(frames, 1.0, tokens_per_min=0)),
        ):
            rows.append(score(name, method, deliveries, duration, truth))
        del frames
    for r in rows:
        ref = next(x for x in rows if x["clip"] == r["clip"] and x["method"] == "fixed_1fps")
        r["tokens_vs_1fps"] = round(r["image_tokens_per_h"] / max(1, ref["image_tokens_per_h"]), 4)
    return rows


# ---- part 2: TTFT after 1 and 60 minutes against the real server ------------------------------------------------


def simulated_memory(minutes: float, cfg: Any) -> Any:
    """A RemoteMemory after `minutes` of builtin:demo at 2 fps through the daemon's remote path (DTD, scene
    detector, feed gate, bounded memory); each closed scene's caption filled in locally (80 characters)."""
    from livesight.memory.remote_memory import RemoteMemory
    from livesight.types import SceneChange

    mem = RemoteMemory("cam", cfg.model, cfg.memory)
    sampler = Sampler(2.0)
    dtd = DTD(cfg.dtd, 28, encoder=False)
    det, _ = dtd_detector(SceneConfig(cut_tap_fps=0), "cam", sample_fps=2.0, dtd_mode="pixel")
    for t, rgb in demo_frames():
        if t >= minutes * 60:
            break
        if not sampler.take(t):
            continue
        p = prepare(rgb, cfg.model.image_size)
        dtd.precheck(p, t)
        step = dtd.decide("cam", t, 1_800_000_000.0 + t, p, None)
        change = det.update(step, p)
        if change is not None:
            mem.on_scene_change(SceneChange("cam", change.scene, change.pts, step.wall_time, change.score))
            while (closed := mem.next_caption(float("inf"))) is not None:
                mem.caption_done(closed, f"Scene {closed.scene}: a white square and a red bar move over a new " + "x")
        mem.add_step(step, None, p)
    return mem


async def _ttft(base_url: str, mems: dict[str, Any], cfg: Any, rounds: int) -> dict[str, list[float]]:
    from livesight.model.remote.client import RemoteModel

    model = RemoteModel(cfg.model.model_copy(update={"base_url": base_url}))
    out: dict[str, list[float]] = {k: [] for k in mems}
    try:
        for mem in mems.values():  # warm-up (not counted): the server's first requests are slower
            await model.generate(mem.question_request("Warm up.").messages, kind="question", max_tokens=2)
        for i in range(rounds):
            for key, mem in mems.items():  # alternately: every request is a cold prefix for llama.cpp's one slot
                req = mem.question_request(f"What is happening now? ({i})")
                r = await model.generate(req.messages, kind="question", max_tokens=4)
                out[key].append(r.ttft_ms)
                out[f"{key}_request"] = [req.images, req.image_tokens, len(str(req.messages))]  # type: ignore[list-item]
    finally:
        await model.close()
    return out


def ttft_part(quick: bool) -> dict[str, Any]:
    from livesight.bench.remote.llama_server import LlamaServer, build_gguf, server_available

    why = server_available()
    if why is not None:
        return {"skipped": why}
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo"}],
            "model": {"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "name": "tiny-vl"},
            "memory": {"database": None},
        },
        origin="bench",
    )
    t0 = time.perf_counter()
    # both end at the same point of the demo's scene cycle (5 backgrounds x SCENE_S), so their newest images show the
    # same scenes: what differs is what the longer stream left in memory (captions, evicted images)
    cycle = 5 * SCENE_S / 60
    mems = {"1 min": simulated_memory(1, cfg), "60 min": simulated_memory((10 if quick else 60) + 1 % cycle, cfg)}
    sim_s = time.perf_counter() - t0
    model, mmproj = build_gguf()
    with LlamaServer(model, mmproj) as srv:
        res = asyncio.run(_ttft(srv.base_url, mems, cfg, 3 if quick else 9))
    t1, t60 = statistics.median(res["1 min"]), statistics.median(res["60 min"])
    return {
        "ttft_ms_1min": round(t1, 1),
        "ttft_ms_60min": round(t60, 1),
        "ratio": round(t60 / t1, 3),
        "requests": {k: res[f"{k}_request"] for k in mems},
        "memory": {k: m.stats() for k, m in mems.items()},
        "simulation_s": round(sim_s, 1),
        "samples_ms": {k: [round(x, 1) for x in res[k]] for k in mems},
    }


# ---- part 3: the server down for a minute ------------------------------------------------------------------------


async def _outage(down_s: float) -> dict[str, Any]:
    from livesight.bench.remote.llama_server import free_port
    from livesight.bench.remote.model_stub import Reply, StubServer
    from livesight.daemon.app import App

    port = free_port()
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": "builtin:demo", "sample_fps": 2}],
            "model": {
                "backend": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "name": "stub",
                "request_timeout_s": 5,
            },
            "memory": {"database": None},
            "proactive": {"enabled": True, "min_interval_s": 0},
            "server": {"host": "127.0.0.1", "port": 0},
        },
        origin="bench",
    )
    app = App(cfg)
    task = asyncio.create_task(app.run(), name="bench-app")
    outcomes: list[dict[str, Any]] = []
    try:
        await asyncio.wait_for(app.wait_ready(), 60)
        stub = StubServer([Reply("fine")], port=port)
        await stub.start()
        await asyncio.sleep(3)
        dropped0 = app.service.counters["cam"].frames_dropped_queue
        await stub.stop()
        down_at = time.monotonic()
        while time.monotonic() - down_at < down_s:
            outcomes.append(await _ask(app, cfg.model.request_timeout_s))
            await asyncio.sleep(2.0)
        await stub.start()
        back_at = time.monotonic()
        answered_after = None
        while time.monotonic() - back_at < 30:
            r = await _ask(app, cfg.model.request_timeout_s)
            if r["status"] == "completed":
                answered_after = time.monotonic() - back_at
                break
            await asyncio.sleep(0.5)
        dropped = app.service.counters["cam"].frames_dropped_queue - dropped0
        health = app.service.health()["model"]
        await stub.stop()
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)
    codes = [o.get("code") for o in outcomes if o["status"] != "completed"]
    return {
        "down_s": down_s,
        "questions_while_down": len(outcomes),
        "answered_or_refused_with_code": sum(o["status"] == "completed" or o.get("code") is not None for o in outcomes),
        "codes": sorted(set(c for c in codes if c)),
        "slowest_refusal_s": round(max((o["seconds"] for o in outcomes), default=0.0), 2),
        "frames_dropped_by_ingest": dropped,
        "answer_s_after_server_back": None if answered_after is None else round(answered_after, 2),
        "requests": health["requests"],
    }


async def _ask(app: Any, limit_s: float) -> dict[str, Any]:
    from livesight.types import ResponseDone

    t0 = time.monotonic()
    try:
        async with asyncio.timeout(limit_s + 10):
            async for ev in app.service.query(camera="cam", text="What do you see?", query_id=None):
                if isinstance(ev, ResponseDone):
                    return {"status": ev.status.value, "code": ev.code, "seconds": time.monotonic() - t0}
    except TimeoutError:
        pass
    return {"status": "no answer", "code": None, "seconds": time.monotonic() - t0}


# ---- the benchmark --------------------------------------------------------------------------------------------


def run(out: Path, *, quick: bool = False, device: str = "cpu", shape: str = "tiny") -> dict[str, Any]:
    loop_s = 60.0 if quick else LOOP_S
    rows = feed_part(loop_s)
    ttft = ttft_part(quick)
    outage = asyncio.run(_outage(20.0 if quick else 60.0))
    plots = _plot(out, rows)
    notes = _notes(rows, ttft, outage)
    return {
        "quick": quick,
        "summary": rows,
        "tables": {"TTFT against llama.cpp's server (tiny Qwen2.5-VL GGUF)": [_flat(ttft)], "Server down": [outage]},
        "ttft": ttft,
        "outage": outage,
        "notes": notes,
        "plots": plots,
        "settings": {"truth_fps": TRUTH_FPS, "truth_px": TRUTH_PX, "loop_s": loop_s, "tau": TAU, "recall_s": RECALL_S},
    }


def _flat(ttft: dict[str, Any]) -> dict[str, Any]:
    if "skipped" in ttft:
        return ttft
    return {k: ttft[k] for k in ("ttft_ms_1min", "ttft_ms_60min", "ratio", "simulation_s")} | {
        f"images/tokens ({k})": f"{v[0]}/{v[1]}" for k, v in ttft["requests"].items()
    }


def _notes(rows: list[dict[str, Any]], ttft: dict[str, Any], outage: dict[str, Any]) -> list[str]:
    notes = []
    for r in rows:
        if r["method"] != "ours":
            continue
        vss = next(x for x in rows if x["clip"] == r["clip"] and x["method"] == "vss_chunks")
        notes.append(
            f"{r['clip']} ({r['kind']}): ours (defaults) sends {1 - r['tokens_vs_1fps']:.1%} fewer image tokens than a "
            f"fixed 1 fps sampler, change recall {r['change_recall']:.1%} (1 fps: "
            f"{next(x for x in rows if x['clip'] == r['clip'] and x['method'] == 'fixed_1fps')['change_recall']:.1%}), "
            f"cut recall {r['cut_recall']:.0%}; VSS-style chunks: {vss['image_tokens_per_h']} tokens/h at "
            f"change recall {vss['change_recall']:.1%}, cut recall {vss['cut_recall']:.0%}"
        )
    if "ratio" in ttft:
        notes.append(
            f"TTFT against llama.cpp's server: {ttft['ttft_ms_1min']} ms after 1 min of stream, "
            f"{ttft['ttft_ms_60min']} ms after 60 min: ratio {ttft['ratio']} (target <= 1.2; request size is bounded "
            "by images_per_request and the captions budget)"
        )
    else:
        notes.append(f"TTFT part skipped: {ttft.get('skipped')}")
    notes.append(
        f"Server down {outage['down_s']:.0f} s: {outage['frames_dropped_by_ingest']} frames dropped by ingest, "
        f"{outage['answered_or_refused_with_code']}/{outage['questions_while_down']} questions answered or refused "
        f"with a code ({', '.join(outage['codes'])}; slowest {outage['slowest_refusal_s']} s), answered again "
        f"{outage['answer_s_after_server_back']} s after the server came back"
    )
    notes.append(
        f"Truth: a change is a {TRUTH_FPS:g} fps frame with a 28x28 region changed by >= {TRUTH_PX} (mean absolute, "
        "0-1) since the previous one; recalled when an image taken at or after it that shows at least half its "
        f"changed regions reaches the server within {RECALL_S:g} s. Clips looped to {LOOP_S:g} s (60 s with --quick)."
    )
    return notes


def _plot(out: Path, rows: list[dict[str, Any]]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [next(r for r in rows if r["clip"] == c and r["method"] == m) for c in clips]
        xs = np.arange(len(clips)) + i * width
        axes[0].bar(xs, [v["image_tokens_per_h"] / 1000 for v in vals], width, label=m)
        axes[1].bar(xs, [v["change_recall"] for v in vals], width, label=m)
    for ax, title in zip(axes, ("image tokens per camera-hour (thousands)", "change recall within 1 s"), strict=True):
        ax.set_xticks(np.arange(len(clips)) + 0.4 - width / 2, clips)
        ax.set_title(title)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    name = "remote_feed.png"
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return [name]
