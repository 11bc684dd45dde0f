"""docs/protocol.md's timeline example has exactly the fields the node's routes write."""

from __future__ import annotations

import json
import re
from pathlib import Path

from livesight.protocols.web.history.timeline_routes import scene_row
from livesight.types import Keyframe, TimelineEntry, TimelineHit, keyframe_url

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_scene_list_example_matches_the_rows() -> None:
    blocks = dict(re.findall(r"```json ([\w.]+)\n(.*?)```", DOC.read_text(), flags=re.S))
    doc = json.loads(blocks["timeline.scenes"])
    assert set(doc) == {"camera", "scenes", "next_cursor"}
    e = TimelineEntry("tl_1", "door", 12, 0, 1.0, 2.0, 3.0, 4.0, "c", (Keyframe("first", 1.0, 2.0),))
    row = scene_row(TimelineHit(e, 1.5), {("door", 12)})
    assert set(doc["scenes"][0]) == set(row)
    assert row["thumbnail"] == "/api/cameras/door/scenes/12.jpg" and row["keyframes"] == [keyframe_url("tl_1", 0)]
    example = doc["scenes"][0]
    assert example["keyframes"][0] == keyframe_url(example["id"], 0)
    assert set(scene_row(TimelineHit(e), set())) == set(row) - {"rank"}  # no q: no rank
