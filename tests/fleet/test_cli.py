"""The fleet's command-line errors: one line naming the field, no traceback (before any model is loaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livesight.fleet.ownership import hashed_owner

SINGLE = """
cameras: [{id: cam, source: "builtin:demo"}]
model: {preset: tiny-random}
"""
FLEET = SINGLE + "fleet: {nodes: [a, b]}\nmqtt: {enabled: true}\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livesight", *args], capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_node_outside_the_fleet(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(FLEET)
    r = run("serve", "--config", str(cfg), "--node", "z")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "node.id: 'z' is not one of fleet.nodes (a, b)" in r.stderr


@pytest.mark.slow  # > 5 s alone: make test, not make test-quick
def test_a_node_without_cameras_idles(tmp_path: Path) -> None:
    """More nodes than cameras (or an unlucky hash): the idle node runs, healthy, with no cameras (no crash loop)."""
    import json
    import re
    import signal
    import time
    import urllib.request

    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(FLEET.replace("mqtt: {enabled: true}", "mqtt: {enabled: false}\nserver: {port: 0}"))
    idle = "b" if hashed_owner("cam", ["a", "b"]) == "a" else "a"  # one camera, two nodes: one owns nothing
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesight", "serve", "--config", str(cfg), "--node", idle],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        port = None
        for line in proc.stdout:
            lines.append(line)
            if m := re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
                break
        assert port, "".join(lines)
        assert any("owns none of this fleet's cameras: it idles" in x for x in lines), "".join(lines)
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline and health.get("status") != "ok":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
            except OSError:
                pass
            time.sleep(0.2)
        assert health.get("status") == "ok" and health["cameras"] == {}, health
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_gateway_needs_a_fleet_and_mqtt(tmp_path: Path) -> None:
    single = tmp_path / "single.yaml"
    single.write_text(SINGLE)
    r = run("gateway", "--config", str(single))
    assert r.returncode == 2 and "fleet: the gateway needs a fleet section" in r.stderr
    no_mqtt = tmp_path / "nomqtt.yaml"
    no_mqtt.write_text(SINGLE + "fleet: {nodes: [a]}\n")
    r = run("gateway", "--config", str(no_mqtt))
    assert r.returncode == 2 and "mqtt.enabled" in r.stderr and "Traceback" not in r.stderr


def test_the_gateway_config_needs_no_model_and_keeps_the_fleets_credential_apart() -> None:
    from livesight.config import parse_config, parse_gateway_config
    from livesight.errors import ConfigError

    cams = [{"id": "door", "source": "rtsp://cam/1", "node": "a"}, {"id": "gate", "source": "rtsp://cam/2"}]
    base = {"cameras": cams, "mqtt": {"enabled": True}}
    fleet = {"nodes": [{"id": "a", "url": "ws://10.0.0.1:8765"}, "b"], "node_url": "ws://{node}.nodes:8765"}
    cfg = parse_gateway_config({**base, "fleet": fleet})  # no model section
    assert cfg.model is None and cfg.fleet.node_ids == ["a", "b"]
    assert [cfg.fleet.url_of(n) for n in ("a", "b")] == ["ws://10.0.0.1:8765", "ws://b.nodes:8765"]
    beyond = {"host": "0.0.0.0", "auth_token": "clients-token-0123456789"}
    with pytest.raises(ConfigError, match=r"fleet.node_token is required when server.host is not loopback"):
        parse_gateway_config({**base, "fleet": fleet, "server": beyond})
    same = {**fleet, "node_token": beyond["auth_token"]}
    with pytest.raises(ConfigError, match=r"fleet.node_token must differ from server.auth_token"):
        parse_gateway_config({**base, "fleet": same, "server": beyond})
    ok = parse_gateway_config({**base, "fleet": {**fleet, "node_token": "fleet-credential-0123"}, "server": beyond})
    assert ok.fleet.token == "fleet-credential-0123" and "fleet-credential" not in repr(ok)  # a secret: never shown
    with pytest.raises(ConfigError, match=r"fleet.node_token"):  # the same rule for the nodes (the file is shared)
        parse_config({**base, "model": {"backend": "echo"}, "fleet": fleet, "server": beyond})
    with pytest.raises(ConfigError, match=r"server.allowed_origins: '\*' needs server.auth_token .*hijacking"):
        parse_gateway_config({**base, "fleet": fleet, "server": {"allowed_origins": ["*"]}})  # as for a daemon
    assert cfg.fleet.max_age_s == 120.0  # announcements: 2 x the 60 s interval by default
    short = {**fleet, "announce_interval_s": 60, "announce_max_age_s": 10}
    with pytest.raises(ConfigError, match=r"fleet: announce_max_age_s \(10\) is shorter than announce_interval_s"):
        parse_gateway_config({**base, "fleet": short})
    with pytest.raises(ConfigError, match=r"fleet.nodes.*not a valid node id"):
        parse_gateway_config({**base, "fleet": {"nodes": ["a", "no spaces"]}})
    with pytest.raises(ConfigError, match=r"fleet.node_url"):
        parse_gateway_config({**base, "fleet": {**fleet, "node_url": "ws://fixed:1"}})  # no {node} in it
