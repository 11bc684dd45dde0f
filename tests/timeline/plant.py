"""Past timeline entries for the daemon tests (in-process and remote): written through the store, as the capture
writes them (SQLite row + JPEG files)."""

from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image

from livesight.ids import new_id
from livesight.timeline.store import TimelineStore
from livesight.types import Keyframe, TimelineEntry


def jpeg(value: int) -> bytes:
    rgb = np.full((360, 640, 3), value, np.uint8)
    rgb[100:200, 200:400] = (200, 30, 30)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=80)
    return out.getvalue()


ACTION = jpeg(90)


async def plant(store: TimelineStore, now: float, camera: str = "cam") -> dict[str, TimelineEntry]:
    """Past entries of `camera`, through the store (SQLite row + JPEG files), as the capture writes them."""

    def entry(start: float, end: float, scene: int, caption: str) -> TimelineEntry:
        kfs = (Keyframe("first", start, start), Keyframe("action", start + 20, start + 20), Keyframe("last", end, end))
        return TimelineEntry(new_id("tl"), camera, scene, 0, 100.0 + scene, start, 200.0 + scene, end, caption, kfs)

    made = {
        "cat": entry(now - 20 * 3600, now - 20 * 3600 + 60, 901, "a cat walks along the wall"),
        "van": entry(now - 640, now - 560, 902, "a red van stops at the gate"),
    }

    def write() -> None:
        for e in made.values():
            store.add_entry(e, [jpeg(30), ACTION, jpeg(200)])
        store.flush()

    await asyncio.to_thread(write)
    return made
