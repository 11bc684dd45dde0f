"""The fault-and-abuse suite in quick mode (smaller counts), as `make soak` runs it: every scenario must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mosquitto import MOSQUITTO
from tests.rtsp import has_gst

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.rtsp
@pytest.mark.mqtt
@pytest.mark.skipif(not has_gst(), reason="needs the GStreamer RTSP server (scripts/system-deps.sh)")
@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto (scripts/system-deps.sh)")
def test_soak_quick(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tests.soak", "--quick", "--out", str(tmp_path), "--docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    data = json.loads((tmp_path / "soak.json").read_text())
    failed = {x["scenario"]: x["problems"] for x in data["results"] if not x["ok"]}
    assert r.returncode == 0 and not failed, (failed, r.stdout[-3000:], r.stderr[-3000:])
    names = [x["scenario"] for x in data["results"]]
    assert names == [
        "rtsp_restarts",
        "broker_restarts",
        "ws_fuzz",
        "many_clients",
        "sigterm",
        "kill9",
        "chaos",
        "fleet_restarts",
    ]
    by = {x["scenario"]: x["figures"] for x in data["results"]}
    assert by["rtsp_restarts"]["reconnects_counted"] >= 2 and by["ws_fuzz"]["messages_sent"] == 500
    assert by["kill9"]["rows_lost"] == {"scenes": 0, "responses": 0, "camera_states": 0}
    report = (tmp_path / "reliability.md").read_text()
    assert "| kill9 |" in report and "quick mode" in report
