"""Subprocesses of the serving benchmarks (`livesight bench gateway | web`): a free port, a process whose output goes
to a log file, a line awaited in that log, the broker's binary."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from livesight.errors import LivesightError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(path: Path, obj: object) -> None:
    """Write JSON so that a reader never sees half of it (a temporary file renamed over the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def mosquitto_binary(bench: str) -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise LivesightError(f"bench {bench}: needs mosquitto (scripts/system-deps.sh)")
    return found


class Proc:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_line(self, pattern: str, within: float) -> re.Match[str]:
        deadline = time.monotonic() + within
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(await asyncio.to_thread(self.log.read_text))
            if m:
                return m
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        tail = (await asyncio.to_thread(self.log.read_text))[-2000:]
        raise LivesightError(f"bench: {self.log.name}: no {pattern!r}:\n{tail}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return int(self.proc.returncode)
