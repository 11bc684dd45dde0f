"""A daemon of any checkout, run as a user runs it, and read from outside: `python -m livesight serve --config FILE
--port 0` in a subprocess (PYTHONPATH = the checkout), its /metrics and /healthz over HTTP, its CPU time from /proc,
its events over a WebSocket. Benchmarks that compare this checkout with another (`--baseline DIR`) measure both
the same way, in turns, on the same machine.

    async with running_daemon(tree, config_dict) as d:
        m = await d.metrics()            # {(name, camera label or ""): value}
        cpu = d.cpu_seconds()             # user + system time so far
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LISTENING = re.compile(r"listening on ws://[^:]+:(\d+)")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{camera="([^"]*)"[^}]*\})?\s+(\S+)$')
LOG_LINES = 200  # the daemon's last log lines kept (shown when it fails)


def this_tree() -> Path:
    """The checkout this code runs from (the directory holding the `livesight` package)."""
    return Path(__file__).resolve().parents[2]


@dataclass
class Daemon:
    proc: asyncio.subprocess.Process
    port: int = 0
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))

    async def get(self, path: str) -> bytes:
        """One HTTP GET on the daemon's port; the body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            async with asyncio.timeout(30):
                data = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        if b"chunked" in head.lower():
            body = _unchunk(body)
        return body

    async def metrics(self) -> dict[tuple[str, str], float]:
        """/metrics as {(sample name, camera label or ""): value}."""
        out: dict[tuple[str, str], float] = {}
        for line in (await self.get("/metrics")).decode().splitlines():
            m = _SAMPLE.match(line.strip())
            if m and not line.startswith("#"):
                key = (m.group(1), m.group(2) or "")
                out[key] = out.get(key, 0.0) + float(m.group(3))
        return out

    async def health(self) -> dict[str, Any]:
        return json.loads(await self.get("/healthz"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def _unchunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


@contextlib.asynccontextmanager
async def running_daemon(tree: Path, config: dict[str, Any], *, ready_timeout: float = 180) -> AsyncIterator[Daemon]:
    """`livesight serve` of `tree` on `config` (port 0), ready (model loaded); stopped with SIGINT at the end."""
    with tempfile.TemporaryDirectory(prefix="livesight-bench-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "livesight",
            "serve",
            "--config",
            str(path),
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        d = Daemon(proc)
        found: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(_read_log(d, found), name="bench-daemon-log")
        try:
            async with asyncio.timeout(ready_timeout):
                d.port = await asyncio.shield(found)
                while (await d.health()).get("status") == "starting":  # noqa: ASYNC110 - polled over HTTP
                    await asyncio.sleep(0.2)
            yield d
        except TimeoutError:
            raise RuntimeError(f"the daemon of {tree} did not get ready:\n" + "\n".join(d.log)) from None
        finally:
            await _stop(proc)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _read_log(d: Daemon, found: asyncio.Future[int]) -> None:
    """Drains the daemon's output (its pipe must never fill), keeping the last lines; finds its port."""
    assert d.proc.stdout is not None
    while line := await d.proc.stdout.readline():
        text = line.decode(errors="replace").rstrip()
        d.log.append(text)
        m = LISTENING.search(text)
        if m and not found.done():
            found.set_result(int(m.group(1)))
    if not found.done():
        found.set_exception(RuntimeError("the daemon exited:\n" + "\n".join(d.log)))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
