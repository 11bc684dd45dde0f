"""`livesight bench recall`: needle in a stream. See livesight/bench/recall/__init__.py for the plan."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from livesight.bench.dtd import build_backend
from livesight.bench.recall.feed import BENCH_DTD, DECODE_FPS, SAMPLE_FPS, Feed, open_store
from livesight.bench.recall.questions import Question, build_questions, hit
from livesight.bench.recall.stream import TIMEZONE, World, plan_world
from livesight.bench.recall.ttft import side_by_side
from livesight.config import RecallConfig, TimelineConfig
from livesight.timeline.recall import Recaller
from livesight.timeline.store import TimelineStore

GOALS = {"recall_at_5": 0.95, "ttft_ratio": 1.2, "keyframe_mb_per_camera_day": 50.0, "search_p95_ms": 50.0}
KS = (1, 5)


def ask(questions: list[Question], store: TimelineStore, world: World, now: float) -> list[dict[str, Any]]:
    """Each question through recall (its window, the store's search) with max_scenes 1 and 5: the entries it
    would recall → whether the event's entry is among them ("seen": and its caption names the thing)."""
    recallers = {k: Recaller(store, RecallConfig(max_scenes=k, timezone=TIMEZONE)) for k in KS}
    events = {e.id: e for e in world.events}
    out = []
    for q in questions:
        row: dict[str, Any] = {"question": q.text, "camera": q.camera, "event": q.event, "kind": q.kind}
        row |= {"timed": q.timed, "hard": q.hard, "label": events[q.event].thing.label}
        for k, rc in recallers.items():
            t0 = time.perf_counter()
            rec = rc.recall(q.text, camera=q.camera, now=now, live_start=None)
            row[f"ms@{k}"] = round((time.perf_counter() - t0) * 1000, 2)
            entries = [e for i in rec.entry_ids if (e := store.get(i)) is not None]
            marks = [hit(e, events[q.event], world) for e in entries]
            row[f"seen@{k}"] = "seen" in marks
            row[f"time@{k}"] = any(m is not None for m in marks)
            if k == 1:
                row["window"] = rec.window.phrase if rec.window is not None else None
                row["top_caption"] = entries[0].caption if entries else None
        out.append(row)
    return out


def coverage(world: World, store: TimelineStore) -> dict[str, Any]:
    """Per event: do the keyframes of its entries show it (an entry of its camera overlapping it whose caption names
    the thing)? What capture stored bounds what any retrieval can find. For an event no keyframe shows, why: where
    its entries' keyframes were taken instead."""
    rows = []
    for e in world.events:
        entries = store.between(e.camera, world.epoch + e.start, world.epoch + e.end, limit=20)
        marks = [hit(x, e, world) for x in entries]
        row: dict[str, Any] = {"event": e.id, "seen": "seen" in marks, "entries": len(entries)}
        if not row["seen"]:
            row["why"] = _why_not_shown(world, e, entries)
        rows.append(row)
    why: dict[str, int] = defaultdict(int)
    for r in rows:
        if "why" in r:
            why[r["why"]] += 1
    return {"events": len(rows), "shown": sum(r["seen"] for r in rows), "rows": rows, "why_not_shown": dict(why)}


def _why_not_shown(world: World, e: Any, entries: list[Any]) -> str:
    if not entries:
        return "no entry overlaps it"
    others = [o for o in world.events if o.camera == e.camera and o.id != e.id]
    reasons = []
    for x in entries:
        action = next((k for k in x.keyframes if k.role == "action"), None)
        if action is None:  # its most-kept frame was its first (stored once, as "first") or its last
            first = x.keyframes[0].pts if x.keyframes else x.pts
            reasons.append(
                "the stream's first frame (kept whole by rule) took the action keyframe"
                if first <= 0.0
                else "its most-kept frame is its first or last"
            )
            continue
        t = action.pts
        if t <= 0.0:
            reasons.append("the action keyframe is the stream's first frame (kept whole by rule)")
        elif any(o.start <= t <= o.end + 1.0 for o in others):
            reasons.append("the action keyframe shows another event in the same entry")
        elif e.start <= t <= e.end + 1.0:
            reasons.append("the action keyframe is in its span but does not show it (entering, leaving, dark)")
        else:
            reasons.append("the action keyframe is elsewhere in the entry")
    return reasons[0] if len(set(reasons)) == 1 else " / ".join(sorted(set(reasons)))


def rates(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """recall@k ("seen": the entry and its caption names the thing; "time": the right moment) for these rows."""
    n = len(rows)
    out: dict[str, Any] = {"questions": n}
    for k in KS:
        out[f"recall@{k}"] = round(sum(r[f"seen@{k}"] for r in rows) / n, 3) if n else None
        out[f"moment@{k}"] = round(sum(r[f"time@{k}"] for r in rows) / n, 3) if n else None
    return {key: out}


def keyframe_budget(stats: Any, world: World) -> dict[str, Any]:
    day = 86_400 / world.duration_s
    per_cam = {c: round(b * day / 1e6, 2) for c, b in sorted(stats.keyframe_bytes.items())}
    n = sum(stats.keyframes_per_camera.values())
    return {
        "mb_per_camera_day": per_cam,
        "max_mb_per_camera_day": max(per_cam.values()) if per_cam else 0.0,
        "keyframes_per_camera_day": {c: round(k * day) for c, k in sorted(stats.keyframes_per_camera.items())},
        "mean_keyframe_kb": round(sum(stats.keyframe_bytes.values()) / max(n, 1) / 1e3, 1),
    }


def search_at_scale(rows: int) -> dict[str, Any]:
    try:
        from livesight.bench.timeline_search import run as search_run
    except ImportError:  # not merged yet
        return {"rows": 0, "queries": {}, "missing": "livesight/bench/timeline_search.py"}
    return search_run(rows, repeats=20 if rows < 1_000_000 else 40)


def run(out_dir: Path, *, device: str = "cpu", shape: str = "tiny", quick: bool = False, **_: Any) -> dict[str, Any]:
    duration = 600.0 if quick else 7200.0
    world = plan_world(duration)
    backend = build_backend(device, shape)
    work = Path(tempfile.mkdtemp(prefix="livesight-recall-"))
    tl = TimelineConfig()
    try:
        log, store = open_store(work / "timeline.sqlite", tl)
        log1, store1 = open_store(work / "first-minute.sqlite", tl)
        feed = Feed(world, backend, store, first_minute_store=store1, memory_camera=world.cameras[0])
        t0 = time.perf_counter()
        stats = feed.run(
            lambda pts: print(f"  stream {pts / 60:.0f} min, {time.perf_counter() - t0:.0f} s", flush=True)
        )
        now = world.epoch + duration
        questions = build_questions(world, now)
        answers = ask(questions, store, world, now)
        cov = coverage(world, store)
        assert feed.memory is not None and feed.memory_1min is not None
        ttft = side_by_side(
            (feed.memory_1min, store1, world.epoch + 60.0),
            (feed.memory, store, now),
            repeats=3 if quick else 15,
            cfg=RecallConfig(timezone=TIMEZONE),
        )
        keyframes = keyframe_budget(stats, world)
        keyframes["disk_bytes"] = sum(f.stat().st_size for f in (work / "timeline.keyframes").rglob("*.jpg"))
        entries = store.counters()
        store.close()
        store1.close()
        log.close()
        log1.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    search = search_at_scale(20_000 if quick else 1_000_000)
    result = report(world, stats, answers, cov, ttft, keyframes, search, quick=quick)
    result["store_counters"] = entries
    _plot(out_dir, result, world)
    (out_dir / "recall.md").write_text(page(result))
    result["pages"] = ["recall.md"]
    return result


def report(
    world: World,
    stats: Any,
    answers: list[dict[str, Any]],
    cov: dict[str, Any],
    ttft: dict[str, Any],
    keyframes: dict[str, Any],
    search: dict[str, Any],
    *,
    quick: bool,
) -> dict[str, Any]:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_hard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in answers:
        by_kind[a["kind"]].append(a)
        by_hard[a["hard"] or "ordinary"].append(a)
    overall = rates(answers, "all")["all"]
    timed = rates([a for a in answers if a["timed"]], "with a time expression")
    untimed = rates([a for a in answers if not a["timed"]], "without")
    kinds = [{"kind": k, **rates(v, "x")["x"]} for k, v in sorted(by_kind.items())]
    hard = [{"case": k, **rates(v, "x")["x"]} for k, v in sorted(by_hard.items())]
    shown = {a["event"] for a in answers if a["event"] in {r["event"] for r in cov["rows"] if r["seen"]}}
    retrieval_only = rates([a for a in answers if a["event"] in shown], "x")["x"]
    q_rows = ttft["rows"]
    worst = max((r for r in q_rows if r["recall from"] != "the whole timeline"), key=lambda r: r["ratio_with_recall"])
    forced = [r for r in q_rows if r["recall from"] == "the whole timeline"]
    search_rows = [{"query": k, **v} for k, v in search.get("queries", {}).items()]
    search_p95 = max((r.get("p95_ms", 0.0) for r in search_rows), default=None)
    summary = [
        {"figure": "recall@1 (entry shown)", "value": overall["recall@1"], "goal": "(reported)"},
        {"figure": "recall@5 (entry shown)", "value": overall["recall@5"], "goal": f"≥ {GOALS['recall_at_5']}"},
        {"figure": "recall@5, right moment only", "value": overall["moment@5"], "goal": ""},
        {"figure": "events shown in their entries' keyframes", "value": f"{cov['shown']}/{cov['events']}", "goal": ""},
        {"figure": "recall@5 over events shown", "value": retrieval_only["recall@5"], "goal": ""},
        {
            "figure": "TTFT 2 h / 1 min, with recall (worst question)",
            "value": worst["ratio_with_recall"],
            "goal": f"≤ {GOALS['ttft_ratio']}",
        },
        {
            "figure": "TTFT 2 h / 1 min, recalling from the whole timeline (worst question)",
            "value": max((r["ratio_with_recall"] for r in forced), default=None),
            "goal": "",
        },
        {
            "figure": "keyframes, MB per camera-day (worst camera)",
            "value": keyframes["max_mb_per_camera_day"],
            "goal": f"≤ {GOALS['keyframe_mb_per_camera_day']}",
        },
        {
            "figure": f"search p95 (ms) on {search.get('rows', 0):,} rows (slowest query kind)",
            "value": search_p95,
            "goal": f"≤ {GOALS['search_p95_ms']}",
        },
    ]
    notes = [
        f"Stream: {len(world.cameras)} cameras × {world.duration_s / 3600:.2f} h of synthetic 588x336 video "
        f"({DECODE_FPS:g} fps to the cut tap, sampled at {SAMPLE_FPS:g} fps; DTD in {BENCH_DTD.mode} mode, "
        f"τ = {BENCH_DTD.threshold}: the tiny model's random features would make 'most kept tokens' noise), "
        f"{len(world.events)} planted events; "
        f"{stats.frames} sampled frames ({stats.encoded} through the vision encoder), {stats.scene_changes} scene "
        f"changes, {stats.entries} timeline entries, {stats.keyframes} keyframes; "
        f"{stats.wall_s:.0f} s of wall time for {world.duration_s * len(world.cameras) / 3600:.1f} camera-hours "
        f"({world.duration_s * len(world.cameras) / max(stats.wall_s, 1e-9):.0f}x real time).",
        f"{len(answers)} questions, {sum(a['timed'] for a in answers)} with a time expression; each asked on its "
        "event's camera at the end of the stream through timeline/recall.py (when.py + the store's BM25 search) "
        "with max_scenes 1 and 5, live_start None (the whole timeline; in the daemon the live window is answered "
        "live). recall@k: the event's entry (its camera, overlapping its time) is among the k recalled and its "
        "oracle caption names the thing; 'moment': the right entry by time, whatever its keyframes show.",
        f"Keyframe coverage: {cov['shown']} of {cov['events']} events show in the keyframes of an entry overlapping "
        "them (timeline/keyframes.py keeps first, most-kept-tokens and last frame per entry, and closes an entry on a "
        "still view when its activity ended, after at least a minute); no retrieval can find "
        "what no keyframe shows. recall@5 over the events that are shown: "
        f"{retrieval_only['recall@5']}.",
        f"TTFT (tiny model, in-process): same question asked of a camera memory with 1 min of stream and one with "
        f"{world.duration_s / 3600:.0f} h, in turns, median of {ttft['repeats']}; 'with recall' adds recall's own "
        "time (parse, search, keyframe reads) to the model's TTFT (which includes prefilling the recalled segment). "
        "A parked camera's live window spans the whole stream (DTD keeps few tokens, no scene ends), so recall, which "
        "leaves out what the live window holds, recalls nothing there ('before the live window': the daemon's "
        "answer); the 'whole timeline' rows recall max_scenes entries with their keyframes through the vision tower: "
        "what a camera whose live window holds minutes pays.",
        "The oracle reads only keyframe pixels: a thing that no stored keyframe shows cannot be captioned, so 'events "
        "no keyframe shows, by cause' is what limits recall@k here (capture's keyframe choice), while 'recall@5 over "
        "events shown' measures when.py + the search + recall.py alone.",
    ]
    return {
        "quick": quick,
        "summary": summary,
        "tables": {
            "Recall by question kind": kinds,
            "Hard cases": hard,
            "With and without a time expression": [{"questions": k, **v} for k, v in (timed | untimed).items()],
            "TTFT: 1 min vs 2 h of history, side by side": q_rows,
            "Events no keyframe shows, by cause": [
                {"cause": k, "events": v} for k, v in sorted(cov["why_not_shown"].items(), key=lambda kv: -kv[1])
            ]
            or [{"cause": "(none: every event shows in a keyframe)", "events": 0}],
            "Keyframe bytes per camera-day": [
                {"camera": c, "MB/day": mb, "keyframes/day": keyframes["keyframes_per_camera_day"][c]}
                for c, mb in keyframes["mb_per_camera_day"].items()
            ],
            "Search at scale (livesight/bench/timeline_search.py)": search_rows,
        },
        "notes": notes,
        "overall": overall,
        "retrieval_only": retrieval_only,
        "coverage": cov,
        "answers": answers,
        "ttft": ttft,
        "keyframes": keyframes,
        "search": search,
        "stream": {
            "duration_s": world.duration_s,
            "cameras": list(world.cameras),
            "epoch": world.epoch,
            "events": [
                {
                    "id": e.id,
                    "camera": e.camera,
                    "start": e.start,
                    "end": e.end,
                    "what": e.thing.label,
                    "hard": e.hard,
                }
                for e in world.events
            ],
            "frames": stats.frames,
            "encoded": stats.encoded,
            "scene_changes": stats.scene_changes,
            "entries": stats.entries,
            "wall_s": round(stats.wall_s, 1),
            "stage_s": {k: round(v, 1) for k, v in stats.stage_s.items()},
            "caption_s": round(stats.caption_ms / 1000, 1),
            "capture": stats.capture,
        },
        "goals": GOALS,
    }


def page(result: dict[str, Any]) -> str:
    """docs/bench/recall.md: the figures, the goals, how to run."""
    from livesight.bench.report import table

    parts = [
        "# Needle in a stream: `livesight bench recall`",
        "",
        "Can a user find a moment hours back? Three parked cameras stream for hours (synthetic video, run faster than",
        "real time on its own clock), with planted events of known truth; the real parts turn the frames into",
        "timeline entries (DTD, the scene detector with its cut tap, timeline/keyframes.py, the TimelineStore with a",
        "real SQLite file and JPEGs); an oracle describer captions each entry from its stored keyframes' pixels",
        "(livesight/bench/recall/oracle.py: it knows the palette it planted, not the truth table), so retrieval is",
        "measured without real weights; questions with known answers go through timeline/recall.py.",
        "",
        "Run it: `livesight bench recall --out DIR [--docs docs]` (`--quick`: 10 minutes of stream, for tests).",
        "",
        "## Figures and goals",
        "",
        table(result["summary"]),
    ]
    for title, rows in result["tables"].items():
        parts += ["", f"## {title}", "", table(rows)]
    parts += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    for plot in result.get("plots", []):
        parts += ["", f"![{plot}]({plot})"]
    return "\n".join(parts) + "\n"


def _plot(out_dir: Path, result: dict[str, Any], world: World) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 6.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    a = fig.add_subplot(grid[0, 0])
    kinds = result["tables"]["Recall by question kind"]
    x = range(len(kinds))
    a.bar([i - 0.2 for i in x], [k["recall@1"] for k in kinds], 0.4, label="recall@1")
    a.bar([i + 0.2 for i in x], [k["recall@5"] for k in kinds], 0.4, label="recall@5")
    a.axhline(GOALS["recall_at_5"], color="gray", ls=":", lw=1)
    a.set_xticks(list(x), [k["kind"] for k in kinds], rotation=30, ha="right", fontsize=7)
    a.set_ylim(0, 1.05)
    a.set_title("Recall by question kind (entry shown)", fontsize=10)
    a.legend(fontsize=7)
    b = fig.add_subplot(grid[0, 1])
    rows = result["ttft"]["rows"]
    x = range(len(rows))
    b.bar([i - 0.2 for i in x], [r["with_recall_1min_ms"] for r in rows], 0.4, label="1 min of history")
    span = f"{world.duration_s / 3600:g} h" if world.duration_s >= 3600 else f"{world.duration_s / 60:g} min"
    b.bar([i + 0.2 for i in x], [r["with_recall_2h_ms"] for r in rows], 0.4, label=f"{span} of history")
    labels = [
        r["question"][:26] + "…" + ("\n(recall: whole timeline)" if r["recall from"] == "the whole timeline" else "")
        for r in rows
    ]
    b.set_xticks(list(x), labels, rotation=20, ha="right", fontsize=6)
    b.set_ylabel("question → first token (ms)")
    b.set_title("TTFT with recall, tiny model", fontsize=10)
    b.legend(fontsize=7)
    c = fig.add_subplot(grid[1, :])
    answered = {r["event"]: r for r in result["answers"]}
    for i, cam in enumerate(world.cameras):
        c.plot([0, world.duration_s / 60], [i, i], color="0.85", lw=6, solid_capstyle="butt")
        for e in (e for e in world.events if e.camera == cam):
            r = answered.get(e.id)
            colour = "tab:green" if r and r["seen@1"] else "tab:olive" if r and r["seen@5"] else "tab:red"
            c.plot([e.start / 60, e.end / 60], [i, i], color=colour, lw=10, solid_capstyle="butt")
    c.set_yticks(range(len(world.cameras)), list(world.cameras))
    c.set_xlabel("stream time (min); green: found at rank 1, olive: in the top 5, red: missed")
    c.set_title("The planted events and whether their question found them", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "recall.png", dpi=100)
    plt.close(fig)
    result["plots"] = ["recall.png"]
