"""Secrets never leave the process, end to end: `livesight serve` with cameras whose URLs carry passwords and tokens,
against a real GStreamer RTSP server that demands credentials. The camera with the wrong password says
"authentication failed" (not "invalid data"), the one with the right password goes live, the one pointed at a closed
port says "connection refused" — and no password or token appears in the log, /healthz, the WebSocket's
session.created / camera.state, the retained MQTT state or the event log on disk."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from tests.helpers import free_port, http_get
from tests.mosquitto import Mosquitto
from tests.rtsp import RTSPServer, has_gst

pytestmark = [pytest.mark.rtsp, pytest.mark.mqtt, pytest.mark.slow]  # the daemon and an RTSP server as processes

if not has_gst():
    pytest.skip("GStreamer RTSP server not installed (scripts/system-deps.sh installs it)", allow_module_level=True)

RIGHT = "Right-Pass-8431"  # the RTSP server's password
WRONG = "Wrong-Pass-5527"
TOKEN_VALUE = "tok-7d1f2c9a"  # a token-like query value in a camera URL
REFUSED_PW = "Refused-Pass-3318"
BEARER = "bearer-6b0e1d"  # the daemon's own bearer token (a secret too)
SECRETS = (RIGHT, WRONG, TOKEN_VALUE, REFUSED_PW, BEARER)


def _config(tmp: Path, rtsp_port: int, closed_port: int, broker: int, prefix: str) -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(
        f"""
cameras:
  - id: good
    source: "rtsp://alice:{RIGHT}@127.0.0.1:{rtsp_port}/test"
    sample_fps: 2
  - id: bad
    source: "rtsp://alice:{WRONG}@127.0.0.1:{rtsp_port}/test"
    sample_fps: 2
  - id: tok
    source: "rtsp://127.0.0.1:{rtsp_port}/test?token={TOKEN_VALUE}"
    sample_fps: 2
  - id: gone
    source: "rtsp://bob:{REFUSED_PW}@127.0.0.1:{closed_port}/test"
    sample_fps: 2
    reconnect: {{initial_s: 0.2, max_s: 0.5, attempts: 2}}
model:
  backend: echo
dtd:
  mode: pixel
proactive:
  enabled: false
memory:
  token_budget: 1024
  database: {tmp / "events.sqlite"}
server:
  host: 127.0.0.1
  port: 0
  auth_token: {BEARER}
  stats_interval_s: 0.5
mqtt:
  enabled: true
  port: {broker}
  prefix: {prefix}
logging:
  level: DEBUG
"""
    )
    return cfg


def _no_secret(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    leaked = [s for s in SECRETS if s.encode() in data]
    assert not leaked, f"{where} shows {leaked}"


async def _until_states(ws, want: dict[str, tuple[str, str]], seen: list[dict], within: float = 40) -> None:
    """Read events until every camera in `want` showed (state, reason part)."""
    states: dict[str, dict] = {}
    try:
        async with asyncio.timeout(within):
            while not all(
                c in states and states[c]["state"] == s and r in states[c]["reason"] for c, (s, r) in want.items()
            ):
                e = json.loads(await ws.recv())
                seen.append(e)
                if e["type"] == "camera.state":
                    states[e["camera"]] = e
    except TimeoutError:
        got = {c: (e["state"], e["reason"]) for c, e in states.items()}
        raise AssertionError(f"camera states not reached within {within} s: {got}") from None


async def _observe(port: int, broker: int, prefix: str, seen: list[dict], retained: dict[str, bytes]) -> None:
    """What clients see: WebSocket events, /healthz and /metrics with the token, the retained MQTT topics."""
    async with connect(f"ws://127.0.0.1:{port}/?token={BEARER}") as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "session.created"
        seen.append(hello)
        await _until_states(
            ws,
            {
                "good": ("live", ""),
                "bad": ("reconnecting", "authentication failed"),
                "tok": ("reconnecting", "authentication failed"),
                "gone": ("failed", "connection refused"),
            },
            seen,
        )
    # a late client gets every camera's state (with its reason) in session.created
    async with connect(f"ws://127.0.0.1:{port}/?token={BEARER}") as ws:
        late = json.loads(await ws.recv())
        seen.append(late)
    states = {c["id"]: c for c in late["cameras"]}
    assert "authentication failed" in states["bad"]["reason"], states
    _, _, body = await http_get(port, "/healthz", {"Authorization": f"Bearer {BEARER}"})
    health = json.loads(body)
    assert "authentication failed" in json.dumps(health["cameras"]["bad"]), health["cameras"]
    _no_secret("/healthz", body)
    _, _, metrics = await http_get(port, "/metrics", {"Authorization": f"Bearer {BEARER}"})
    _no_secret("/metrics", metrics)
    async with aiomqtt.Client("127.0.0.1", broker) as mqtt:
        await mqtt.subscribe(f"{prefix}/#")
        try:
            async with asyncio.timeout(2):
                async for msg in mqtt.messages:
                    retained[str(msg.topic)] = bytes(msg.payload)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    assert "authentication failed" in retained[f"{prefix}/bad/state"].decode()


def test_camera_passwords_appear_nowhere(tmp_path: Path, broker: Mosquitto, prefix: str) -> None:
    rtsp = RTSPServer(free_port(), auth=f"alice:{RIGHT}")
    rtsp.start()
    log_path = tmp_path / "daemon.log"
    cfg = _config(tmp_path, rtsp.port, free_port(), broker.port, prefix)
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livesight", "serve", "--config", str(cfg)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    retained: dict[str, bytes] = {}
    seen: list[dict] = []
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", log_path.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        assert port, "daemon did not start:\n" + log_path.read_text()
        asyncio.run(_observe(port, broker.port, prefix, seen, retained))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        rtsp.kill()
    for e in seen:
        _no_secret(f"WebSocket {e['type']}", json.dumps(e))
    for topic, payload in retained.items():
        _no_secret(f"MQTT {topic}", topic.encode() + b" " + payload)
    log = log_path.read_text()
    assert "authentication failed" in log and "connection refused" in log
    # a refused login is retried, but no faster than the backoff's cap (default max_s 30 s; the refused
    # connection's camera backs off from 0.2 s)
    delays = {
        cam: [
            d
            for e in seen
            if e["type"] == "camera.state" and e.get("camera") == cam
            for d in re.findall(r"retry \d+ in ([\d.]+)s", e["reason"])
        ]
        for cam in ("bad", "gone")
    }
    assert delays["bad"] and min(float(d) for d in delays["bad"]) >= 30.0, delays
    assert delays["gone"] and min(float(d) for d in delays["gone"]) < 0.5, delays
    _no_secret("the daemon's log", log)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("events")]
    assert files, "no event log written"
    for p in files:
        _no_secret(f"event log file {p.name}", p.read_bytes())
