"""End to end: `livesight serve` on a free port with a real decoded stream and the tiny real model;
a real `websockets` client asks a question and gets deltas then one done; /healthz answers JSON."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

pytestmark = pytest.mark.slow  # the daemon as a subprocess: make test only

CONFIG = """
cameras:
  - id: cam
    source: "lavfi:testsrc2=size=320x240:rate=10"
    sample_fps: 2
model:
  preset: tiny-random
  max_new_tokens: 8
memory:
  token_budget: 2048
  database: {db}
server:
  host: 127.0.0.1
  port: 0
  stats_interval_s: 0.5
"""


@pytest.fixture
def served(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(db=tmp_path / "events.sqlite"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if not port:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError("server did not start:\n" + "".join(lines))
    try:
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        proc.stdout.close()


async def wait_ready(port: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        if body and body.get("status") in ("ok", "degraded"):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError("daemon never became ready")


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
    except OSError:
        return None


async def test_query_over_websocket(served) -> None:
    proc, port, _ = served
    health = await wait_ready(port)
    assert health["cameras"]["cam"]["state"] in ("live", "connecting")
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "session.created"
        await ws.send(json.dumps({"type": "query", "id": "q1", "text": "What is happening?"}))
        seen: list[dict] = []
        stats: list[dict] = []
        async with asyncio.timeout(60):
            while True:
                ev = json.loads(await ws.recv())
                if ev["type"] == "stats":
                    stats.append(ev)
                if ev["type"].startswith("response.") and ev.get("query_id", "q1") == "q1":
                    seen.append(ev)
                    if ev["type"] == "response.done":
                        break
        types = [e["type"] for e in seen]
        assert types[0] == "response.created"
        assert types[-1] == "response.done" and types.count("response.done") == 1
        assert "response.delta" in types
        done = seen[-1]
        assert done["status"] == "completed" and done["ttft_ms"] > 0
        # stats keep coming, with frames in and tokens kept
        async with asyncio.timeout(30):
            while not stats or stats[-1]["cameras"]["cam"]["tokens_total"] == 0:
                ev = json.loads(await ws.recv())
                if ev["type"] == "stats":
                    stats.append(ev)
        cam = stats[-1]["cameras"]["cam"]
        assert cam["frames_in"] > 0 and 0 < cam["tokens_kept"] <= cam["tokens_total"]
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(CONFIG.format(db="null").replace("port: 0", f"port: {port}"))
        r = subprocess.run(
            [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert str(port) in r.stderr and "in use" in r.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.replace("lavfi:testsrc2=size=320x240:rate=10", "/nonexistent/clip.mp4"), "clip.mp4"),
        (lambda c: c.replace("preset: tiny-random", "path: /nonexistent/model"), "/nonexistent/model"),
        (lambda c: c + "surprise: 1\n", "surprise"),
    ],
)
def test_bad_input_exits_with_one_line(tmp_path: Path, edit, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(edit(CONFIG.format(db="null")))
    r = subprocess.run(
        [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr
