"""The fleet's command-line errors: one line naming the field, no traceback (before any model is loaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_serve_refuses_a_node_without_cameras(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(FLEET)
    idle = "b" if hashed_owner("cam", ["a", "b"]) == "a" else "a"  # one camera, two nodes: one owns nothing
    r = run("serve", "--config", str(cfg), "--node", idle)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"node {idle!r} owns none of the 1 cameras" in r.stderr


def test_gateway_needs_a_fleet_and_mqtt(tmp_path: Path) -> None:
    single = tmp_path / "single.yaml"
    single.write_text(SINGLE)
    r = run("gateway", "--config", str(single))
    assert r.returncode == 2 and "fleet: the gateway needs a fleet section" in r.stderr
    no_mqtt = tmp_path / "nomqtt.yaml"
    no_mqtt.write_text(SINGLE + "fleet: {nodes: [a]}\n")
    r = run("gateway", "--config", str(no_mqtt))
    assert r.returncode == 2 and "mqtt.enabled" in r.stderr and "Traceback" not in r.stderr
