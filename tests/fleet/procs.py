"""Real processes for fleet tests: `livesight serve --node …` and `livesight gateway`, with their output drained."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

FLEET_CONFIG = """
cameras:
  - {{id: door, source: "lavfi:testsrc2=size=160x120:rate=5", sample_fps: 1}}
  - {{id: yard, source: "lavfi:testsrc=size=160x120:rate=5", sample_fps: 1}}
  - {{id: gate, source: "lavfi:testsrc2=size=160x120:rate=5", sample_fps: 1}}
  - {{id: hall, source: "lavfi:testsrc=size=160x120:rate=5", sample_fps: 1, node: b}}
model:
  preset: tiny-random
  image_size: 112
  max_new_tokens: 4
memory:
  token_budget: 1024
  database: null
proactive:
  enabled: false
server:
  host: 127.0.0.1
  port: 0
  stats_interval_s: 1
mqtt:
  enabled: true
  port: {mqtt_port}
  prefix: {prefix}
  keepalive_s: {keepalive}
  reconnect: {{initial_s: 0.2, max_s: 1}}
fleet:
  nodes: [a, b]
"""
# by rendezvous hashing over [a, b]: door → a, yard → a, gate → b; hall → a by hashing but b explicitly
OWNERS = {"door": "a", "yard": "a", "gate": "b", "hall": "b"}

# The same four cameras as the built-in demo stream (a hard cut every 5 s), proactive on: what a user runs
DEMO_FLEET_CONFIG = (
    FLEET_CONFIG.replace('"lavfi:testsrc2=size=160x120:rate=5"', "builtin:demo")
    .replace('"lavfi:testsrc=size=160x120:rate=5"', "builtin:demo")
    .replace("sample_fps: 1", "sample_fps: 2")
    .replace("proactive:\n  enabled: false", "proactive:\n  enabled: true")
)


class Proc:
    """A livesight subprocess whose output lines are collected by a thread (so its pipe never fills)."""

    def __init__(self, args: list[str], name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesight", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._thread = threading.Thread(target=self._drain, name=f"drain-{name}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """The first output line (from line `start` on) matching `pattern`; AssertionError with the log otherwise."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and i >= len(self.lines)):
                    raise AssertionError(f"{self.name}: no line matching {pattern!r}:\n" + "".join(self.lines[-40:]))
                self._cond.wait(min(left, 0.5))

    def port(self, timeout: float = 90) -> int:
        return int(self.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)", timeout).group(1))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def write_config(
    tmp: Path, mqtt_port: int, prefix: str, keepalive: int = 2, template: str = FLEET_CONFIG, **fields: str
) -> Path:
    p = tmp / "fleet.yaml"
    p.write_text(template.format(mqtt_port=mqtt_port, prefix=prefix, keepalive=keepalive, **fields))
    return p


def node(config: Path, name: str, env: dict[str, str] | None = None) -> Proc:
    return Proc(["serve", "--config", str(config), "--node", name], f"node-{name}", env)


def gateway(config: Path, env: dict[str, str] | None = None) -> Proc:
    return Proc(["gateway", "--config", str(config), "--port", "0"], "gateway", env)
