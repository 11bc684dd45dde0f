"""`livesight chat` as a subprocess with piped stdin, against the real server, Service and model worker (echo backend:
an answer to `say: TEXT` is TEXT, one token a word)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys

from livesight.protocols.client.chat import ChatState, command_to_message
from tests.helpers import Running, eventually, start_server, stop_server

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livesight",
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )


async def read_until(proc: asyncio.subprocess.Process, needle: str, out: list[str], within: float = 20) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(within):
        while not any(needle in line for line in out):
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"chat exited before printing {needle!r}:\n" + "".join(out))
            out.append(line.decode())


async def send(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write((line + "\n").encode())
    await proc.stdin.drain()


async def test_interactive_session(running: Running) -> None:
    pipe, svc = running.pipe, running.pipe.service
    svc.counters["cam1"].frames_dropped_queue = 2
    pipe.backend.token_delay_s = 0.01  # a first token after ≥ 10 ms: the line shows it (0 ms is left out)
    proc = await spawn(running.url, "--camera", "cam2")
    out: list[str] = []
    try:
        await read_until(proc, "connected: cameras cam1 (live), cam2 (live)", out)
        await read_until(proc, "now asking cam2", out)
        await send(proc, "say: a cup is on the table")
        await read_until(proc, "cam2> a cup is on the table  (6 tokens, first after ", out)
        await send(proc, "/watch a person enters")
        await read_until(proc, "watching w1 on cam2: a person enters", out)
        (service_watch_id,) = svc.watches
        pipe.watch_hit(service_watch_id, "yes, a person came in")
        await read_until(proc, "[watch w1 · cam2] yes, a person came in", out)
        pipe.scene("cam1", 4)
        await read_until(proc, "── cam1: scene 4 at 12.0s (score 4.20)", out)
        pipe.proactive("a dog walks in", camera="cam1", scene=4)
        await read_until(proc, "[cam1 · scene 4 · proactive] a dog walks in", out)
        await send(proc, "/unwatch w1")
        await read_until(proc, "watch w1 removed", out)
        assert svc.watches == {}
        await send(proc, "/camera nowhere")
        await read_until(proc, "! unknown_camera: unknown camera 'nowhere'", out)
        await send(proc, "/stats")
        await read_until(proc, "── cam1: live, frames 0, dropped 2, tokens kept 0/0 (drop ratio 0.00)", out)
        await send(proc, "/quit")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cancel_a_running_question(running: Running) -> None:
    svc = running.pipe.service
    running.pipe.hold()
    proc = await spawn(running.url)
    out: list[str] = []
    try:
        await read_until(proc, "connected", out)
        await send(proc, "a long question")
        await eventually(lambda: svc.responses.active == 1, what="query running")
        await send(proc, "/cancel")
        await read_until(proc, "cam1>   (cancelled)", out)
        assert svc.responses.active == 0
        assert proc.stdin is not None
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_piped_questions_wait_for_their_answers(running: Running) -> None:
    running.pipe.backend.token_delay_s = 0.05
    proc = await spawn(f"127.0.0.1:{running.port}")
    stdout, stderr = await asyncio.wait_for(proc.communicate(b"say: the first answer\nsay: the second one\n"), 20)
    text = stdout.decode()
    assert proc.returncode == 0, stderr.decode()
    # Both answers streamed; the terminal shows each whole, in order, never interleaved.
    lines = text.splitlines()[1:]
    assert [line.split("  (")[0] for line in lines] == ["cam1> the first answer", "cam1> the second one"]
    assert all(re.search(r"\(3 tokens, first after \d+ ms\)$", line) for line in lines), lines
    assert "Traceback" not in stderr.decode()


async def test_server_going_away_exits_non_zero() -> None:
    r = await start_server()
    proc = await spawn(r.url)
    out: list[str] = []
    try:
        await read_until(proc, "connected", out)
        await stop_server(r)
        await read_until(proc, "connection closed by the server (code 1001", out)
        assert await asyncio.wait_for(proc.wait(), 10) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_refused_and_unreachable_are_one_line() -> None:
    r = await start_server(auth_token="s3cret")
    try:
        proc = await spawn(r.url)
        _, err = await asyncio.wait_for(proc.communicate(b""), 20)
        assert proc.returncode == 2
        assert err.decode().strip() == (
            f"livesight: error: {r.url} refused the connection: HTTP 401 (wrong or missing token: --token or "
            "LIVESIGHT_TOKEN)"
        )
        proc = await spawn(r.url, "--token", "s3cret")
        stdout, _ = await asyncio.wait_for(proc.communicate(b"hello\n"), 20)
        assert proc.returncode == 0 and "You asked: hello" in stdout.decode()
    finally:
        await stop_server(r)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        proc = await spawn(f"ws://127.0.0.1:{port}")
        _, err = await asyncio.wait_for(proc.communicate(b""), 20)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"livesight: error: cannot connect to ws://127.0.0.1:{port}")


def test_command_parsing() -> None:
    s = ChatState()
    s.cameras = ["a", "b"]
    assert command_to_message("  ", s) is None
    assert command_to_message("what now?", s) == {"type": "query", "id": "q1", "text": "what now?"}
    assert command_to_message("/cancel", s) == {"type": "query.cancel", "id": "q1"}
    assert command_to_message("/cancel q7", s) == {"type": "query.cancel", "id": "q7"}
    assert command_to_message("/watch a red car", s) == {"type": "watch.add", "id": "w1", "text": "a red car"}
    assert command_to_message("/unwatch w1", s) == {"type": "watch.remove", "id": "w1"}
    assert command_to_message("/camera b", s) == {"type": "session.update", "camera": "b"}
    assert command_to_message("/camera", s) == "usage: /camera <id> (cameras: a, b)"
    assert command_to_message("/proactive off", s) == {"type": "session.update", "proactive": False}
    assert command_to_message("/proactive maybe", s) == "usage: /proactive on|off"
    assert command_to_message("/quit", s) == "quit"
    assert command_to_message("/dance", s) == "unknown command /dance (/help)"
    s.running.clear()
    assert command_to_message("/cancel", s) == "nothing to cancel"
