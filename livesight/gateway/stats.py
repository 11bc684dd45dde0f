"""One fleet-wide `stats` event from the nodes' latest ones (pure)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from livesight.contract.events import finite


def merge_stats(per_node: Iterable[dict[str, Any]], *, now: float | None = None) -> dict[str, Any]:
    """Cameras: the union of the nodes' per-camera numbers. Totals: integer totals summed, `drop_ratio` recomputed
    from the summed token counts, `ttft_ms_median` the median of the nodes' medians, `nodes` how many reported."""
    cameras: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    medians: list[float] = []
    n = 0
    for st in per_node:
        n += 1
        if isinstance(st.get("cameras"), dict):
            cameras.update(st["cameras"])
        node_totals = st.get("totals") if isinstance(st.get("totals"), dict) else {}
        for k, v in node_totals.items():
            if isinstance(v, int) and not isinstance(v, bool):
                totals[k] = totals.get(k, 0) + v
        m = node_totals.get("ttft_ms_median")
        if isinstance(m, int | float) and not isinstance(m, bool):
            medians.append(float(m))
    tt, kept = totals.get("tokens_total", 0), totals.get("tokens_kept", 0)
    totals["drop_ratio"] = round(1 - kept / tt, 4) if tt else 0.0
    totals["ttft_ms_median"] = sorted(medians)[len(medians) // 2] if medians else None
    totals["nodes"] = n
    return {
        "type": "stats",
        "wall_time": finite(time.time() if now is None else now),
        "cameras": cameras,
        "totals": totals,
    }
