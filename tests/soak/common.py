"""Shared parts of the fault-and-abuse suite: the scenario result, a daemon in process or as a subprocess,
WebSocket helpers. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from websockets.asyncio.client import ClientConnection, connect

from livesight.config import Config, parse_config
from livesight.daemon.app import App, AppHandles


@dataclass
class Result:
    scenario: str
    tried: str
    held: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    def check(self, cond: bool, held: str, failed: str | None = None) -> None:
        """Record what held, or a problem (the scenario is then not ok)."""
        if cond:
            self.held.append(held)
        else:
            self.ok = False
            self.problems.append(failed or f"did not hold: {held}")


def rss_mib(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def config_dict(cameras: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cameras": cameras,
        "model": {"preset": "tiny-random", "max_new_tokens": 8},
        "memory": {"token_budget": 2048, "database": None},
        "proactive": {"enabled": False},
        "server": {"host": "127.0.0.1", "port": 0, "stats_interval_s": 0.5},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return base


@contextlib.asynccontextmanager
async def app_running(cfg: Config) -> AsyncIterator[tuple[App, AppHandles]]:
    """The whole daemon in this process (cameras, model worker, WS server, MQTT when configured)."""
    app = App(cfg)
    task = asyncio.create_task(app.run(), name="soak-app")
    try:
        ready = asyncio.create_task(app.wait_ready(), name="soak-app-ready")
        done, _ = await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()  # raises the start-up error
            raise TimeoutError("the daemon did not become ready in 120 s")
        yield app, ready.result()
    finally:
        app.stop()
        try:
            async with asyncio.timeout(30):
                await task
        except TimeoutError:
            task.cancel()
            raise


def make_config(d: dict[str, Any]) -> Config:
    return parse_config(d, origin="soak")


async def hello(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            ev = json.loads(await ws.recv())
            if ev["type"] == "session.created":
                return ev


async def ask(ws: ClientConnection, qid: str, text: str = "What is happening?", within: float = 30) -> dict[str, Any]:
    """Send a query and wait for its response.done (other events are skipped)."""
    await ws.send(json.dumps({"type": "query", "id": qid, "text": text}))
    async with asyncio.timeout(within):
        while True:
            ev = json.loads(await ws.recv())
            if ev["type"] == "response.done" and ev.get("query_id") == qid:
                return ev
            if ev["type"] == "error" and ev.get("event_id") == qid:
                return ev


async def answered(url: str, qid: str = "probe") -> bool:
    """Does the daemon still answer a valid question on a fresh connection?"""
    try:
        async with connect(url, open_timeout=10) as ws:
            await hello(ws)
            ev = await ask(ws, qid)
            return ev["type"] == "response.done" and ev["status"] == "completed"
    except (OSError, TimeoutError) as e:
        print(f"probe failed: {e!r}", file=sys.stderr)
        return False


class Served:
    """`livesight serve` as a subprocess (for signals and kill -9)."""

    def __init__(self, workdir: Path, cfg: dict[str, Any], name: str = "serve") -> None:
        self.cfg_path = workdir / f"{name}.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self, timeout: float = 90) -> int:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends to the log
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesight", "serve", "--config", str(self.cfg_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", text)
            if m and self._ready(int(m.group(1))):
                self.port = int(m.group(1))
                return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.kill()
        raise RuntimeError("livesight serve did not become ready:\n" + self.log_path.read_text()[-2000:])

    @staticmethod
    def _ready(port: int) -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return json.loads(r.read()).get("status") in ("ok", "degraded")
        except (OSError, ValueError):
            return False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        self.proc = None
