"""SQLite event log: rows survive restart and kill -9; scene numbering continues; writes never block."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livesight.errors import ConfigError
from livesight.memory.event_log import EventLog
from livesight.types import CameraState, CameraStatus, SceneChange

WRITER = """
import sys, time
from livesight.memory.event_log import EventLog
from livesight.types import SceneChange
log = EventLog(sys.argv[1])
i = 0
while True:
    for _ in range(50):
        i += 1
        log.scene(SceneChange("cam", i, float(i), time.time(), 1.0))
    log.flush()
    print(i, flush=True)  # everything up to i is committed
"""


def test_rows_survive_restart_and_numbering_continues(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    log = EventLog(db)
    for i in (1, 2, 3):
        log.scene(SceneChange("door", i, i * 10.0, time.time(), 4.0))
    log.caption("door", 2, "a person walks in")
    log.camera_state(CameraStatus("door", CameraState.LIVE, "", time.time()))
    log.response(response_id="r1", camera="door", kind="query", question="q?", answer="a", ttft_ms=12.5)
    log.close()
    again = EventLog(db)
    assert again.last_scene("door") == 3 and again.last_scene("other") == 0
    scenes = again.rows("scenes")
    assert [s["scene"] for s in scenes] == [3, 2, 1] and scenes[1]["caption"] == "a person walks in"
    assert again.rows("responses")[0]["answer"] == "a"
    assert again.rows("camera_states")[0]["state"] == "live"
    again.close()


def test_kill_9_during_writes_keeps_every_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite"
    with subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        committed = 0
        while committed < 2000:
            line = proc.stdout.readline()
            assert line, "writer died"
            committed = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    log = EventLog(db)  # opens (WAL recovery) with every committed row
    assert log.last_scene("cam") >= committed
    assert len(log.rows("scenes", limit=10**6)) >= committed
    log.close()


def test_bad_database_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"memory\.database"):
        EventLog(tmp_path / "file" / "db.sqlite")
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=r"memory\.database"):
        EventLog(tmp_path / "garbage.sqlite")


def test_retention_bounds_rows(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "r.sqlite", max_rows=100)
    for i in range(1200):
        log.camera_state(CameraStatus("c", CameraState.LIVE, str(i), 0.0))
    log.flush()
    log._trim(log._read)  # the writer trims every 1000 writes; trim once more to check the bound
    assert len(log.rows("camera_states", limit=10**6)) <= 100
    log.close()
