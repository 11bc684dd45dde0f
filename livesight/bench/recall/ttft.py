"""Time to first token with 2 hours of history against 1 minute of it, side by side (tiny model, in-process).

Two live memories of the same camera: one fed the whole stream (2 h), one fed only its first minute; two stores:
the whole timeline, and only the entries that closed in the first minute. The same question is asked of each, in
turns, the way the daemon answers it: recall (timeline/recall.py: the time expression, the store's search, the
keyframes read from disk) fitted to the room the live window leaves (`recall_room`), then the answer with the
recalled segment after the cached live window (`CameraMemory.answer(recalled=…)`), to its first token.

A parked camera's live window spans the whole 2 h (DTD keeps so few tokens that the budget never fills and no scene
ends), so recall, which leaves out what the live window holds, recalls nothing there: the daemon's answer. The same
questions are also asked recalling from the whole timeline (live_start ignored), which is the cost a camera whose
live window holds minutes pays: max_scenes entries, their keyframes through the vision tower.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from livesight.config import RecallConfig
from livesight.memory.camera_memory import CameraMemory
from livesight.timeline.recall import Recaller
from livesight.timeline.store import TimelineStore

QUESTIONS = (
    "What came by the gate this morning?",  # a window and a word: recalls max_scenes entries at 2 h, none at 1 min
    "When did a person come by?",  # a word only
    "What is happening right now?",  # the present: nothing recalled (the live window alone)
)


def _one(mem: CameraMemory, recaller: Recaller, question: str, now: float, *, live: bool) -> dict[str, float]:
    t0 = time.perf_counter()
    room = mem.recall_room()
    rec = recaller.recall(question, camera=mem.camera, now=now, live_start=room.live_start if live else None)
    rec = rec.fit(room.budget_tokens, lambda _img: room.image_tokens)
    recall_ms = (time.perf_counter() - t0) * 1000
    r = mem.answer(question, max_new_tokens=1, recalled=rec.segment())
    ttft = float(r.ttft_ms or 0.0)
    return {
        "recall_ms": recall_ms,
        "ttft_ms": ttft,
        "total_ms": recall_ms + ttft,
        "recalled": float(len(rec.lines)),
        "images": float(len(rec.images)),
    }


def side_by_side(
    short: tuple[CameraMemory, TimelineStore, float],
    long: tuple[CameraMemory, TimelineStore, float],
    *,
    repeats: int,
    cfg: RecallConfig,
) -> dict[str, Any]:
    """(memory, store, now) at 1 min and at 2 h → per question, medians of each, asked in turns."""
    rows = []
    for q, live in [(q, True) for q in QUESTIONS] + [(q, False) for q in QUESTIONS[:2]]:
        runs: dict[str, list[dict[str, float]]] = {"short": [], "long": []}
        recallers = {"short": Recaller(short[1], cfg), "long": Recaller(long[1], cfg)}
        for i in range(repeats + 1):
            for name, (mem, _store, now) in (("short", short), ("long", long)):
                r = _one(mem, recallers[name], q, now, live=live)
                if i > 0:  # the first turn warms (dateparser's first parse, caches)
                    runs[name].append(r)

        def med(name: str, key: str, runs: dict[str, list[dict[str, float]]] = runs) -> float:
            return round(statistics.median(r[key] for r in runs[name]), 2)

        rows.append(
            {
                "question": q,
                "recall from": "before the live window" if live else "the whole timeline",
                "ttft_1min_ms": med("short", "ttft_ms"),
                "ttft_2h_ms": med("long", "ttft_ms"),
                "ratio": round(med("long", "ttft_ms") / max(med("short", "ttft_ms"), 1e-6), 3),
                "with_recall_1min_ms": med("short", "total_ms"),
                "with_recall_2h_ms": med("long", "total_ms"),
                "ratio_with_recall": round(med("long", "total_ms") / max(med("short", "total_ms"), 1e-6), 3),
                "recall_2h_ms": med("long", "recall_ms"),
                "recalled_1min": int(med("short", "recalled")),
                "recalled_2h": int(med("long", "recalled")),
                "images_2h": int(med("long", "images")),
            }
        )
    return {
        "rows": rows,
        "memory_1min": _mem_stats(short[0]),
        "memory_2h": _mem_stats(long[0]),
        "repeats": repeats,
    }


def _mem_stats(mem: CameraMemory) -> dict[str, Any]:
    s = mem.stats()
    keys = ("kv_tokens", "memory_tokens", "scene", "scenes_captioned", "compressions")
    return {k: s[k] for k in keys if k in s}
