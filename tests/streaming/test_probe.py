from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.streaming.media import write_clip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livesight", "probe", *args], capture_output=True, text=True, timeout=60
    )


def test_probe_a_file(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "p.mp4", seconds=2.0, fps=10)
    r = run(str(clip), "--frames", "15")
    assert r.returncode == 0, r.stderr
    assert "mpeg4" in r.stdout and "160x120" in r.stdout and "measured 10.0" in r.stdout
    assert "frames read:  15" in r.stdout


def test_probe_lavfi() -> None:
    r = run("lavfi:testsrc2=size=64x48:rate=5", "--frames", "3")
    assert r.returncode == 0 and "64x48" in r.stdout


def test_probe_failures_are_one_line(tmp_path: Path) -> None:
    for source, words in ((str(tmp_path / "nope.mp4"), "no such file"), ("rtsp://127.0.0.1:9/x", "refused")):
        r = run(source, "--timeout", "10")
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
