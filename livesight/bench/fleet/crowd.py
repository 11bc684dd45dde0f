"""A crowd of WebSocket clients on the gateway, for its benchmark (a process of its own, so the driver that measures
stays idle).

    python -m livesight.bench.fleet.crowd SPEC.json

SPEC: {"url", "clients", "cameras", "ask_every_s", "status_file"}. Each client connects, reads everything the gateway
sends (counted by type from the first bytes: nothing is parsed but the client's own answers) and asks a random camera
a question every `ask_every_s` on average. At SIGTERM (and every second) the counts go to `status_file` as JSON:
clients connected, dropped by the gateway, messages by type, questions asked, answers completed and refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livesight.bench.fleet.procs import write_json

_TYPE_AT = len('{"type":"')


class Crowd:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.connected = 0
        self.dropped = 0  # connections the gateway closed
        self.messages: Counter[str] = Counter()
        self.asked = 0  # questions sent
        self.answers = 0
        self.refused = 0

    async def client(self, i: int, rng: random.Random) -> None:
        url, cams, every = self.spec["url"], self.spec["cameras"], float(self.spec["ask_every_s"])
        async with connect(url, max_size=2**24, compression=None, open_timeout=30) as ws:
            self.connected += 1
            asker = asyncio.create_task(self._ask(ws, i, cams, every, rng), name=f"crowd:{i}:ask")
            try:
                async for raw in ws:
                    text = raw if isinstance(raw, str) else raw.decode()
                    typ = text[_TYPE_AT : text.find('"', _TYPE_AT)]
                    self.messages[typ] += 1
                    if typ == "response.done" and '"kind":"query"' in text:
                        self.answers += 1
                    elif typ == "error":
                        self.refused += 1
            except ConnectionClosed:
                self.dropped += 1
            finally:
                asker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asker
                self.connected -= 1

    async def _ask(self, ws: ClientConnection, i: int, cams: list[str], every: float, rng: random.Random) -> None:
        n = 0
        while True:
            await asyncio.sleep(rng.expovariate(1.0 / every) if every > 0 else 3600)
            n += 1
            msg = {"type": "query", "id": f"c{i}-{n}", "text": "What do you see?", "camera": rng.choice(cams)}
            await ws.send(json.dumps(msg))
            self.asked += 1

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "dropped": self.dropped,
            "messages": dict(self.messages),
            "asked": self.asked,
            "answers": self.answers,
            "refused": self.refused,
        }


async def main(spec: dict[str, Any]) -> None:
    crowd = Crowd(spec)
    status = Path(spec["status_file"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    rng = random.Random(11)
    tasks: list[asyncio.Task[None]] = []
    try:
        for i in range(int(spec["clients"])):
            tasks.append(asyncio.create_task(crowd.client(i, rng), name=f"crowd:{i}"))
            if i % 20 == 19:
                await asyncio.sleep(0.05)  # connect in small waves, as clients do
        while not stop.is_set():
            await asyncio.to_thread(write_json, status, crowd.status())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(write_json, status, crowd.status())


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
