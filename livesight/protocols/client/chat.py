"""`livesight chat [URL]`: a small terminal client for a running daemon.

Type a question and the answer streams in; proactive messages, watch hits, scene changes and camera states are
printed as they arrive. Commands: /cancel [id], /watch <text>, /unwatch <id>, /camera <id>, /proactive on|off,
/stats, /help, /quit. With piped input (not a terminal) it asks each line, and at end of input waits for the
answers still running before it exits, so `echo "what is happening?" | livesight chat` works in scripts.

stdin is read by a daemon thread (blocking reads), handing lines to the event loop; the loop never blocks.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from livesight.errors import LivesightError

HELP = """commands:
  <question>          ask about the current camera (answers stream in)
  /cancel [id]        cancel the latest (or the given) running question
  /watch <text>       standing question, answered at each scene change when true
  /unwatch <id>       remove a watch
  /camera <id>        switch the camera questions go to
  /proactive on|off   receive proactive messages or not
  /stats              show the latest statistics
  /quit               leave (also Ctrl-D)"""

DRAIN_TIMEOUT_S = 120.0  # at end of piped input, how long to wait for running answers
_EOF = None


class ChatError(LivesightError):
    """The chat client cannot connect or was refused."""


@dataclass
class ChatState:
    """What the client tracks: its running queries, watches, the stream being printed."""

    camera: str = ""
    cameras: list[str] = field(default_factory=list)
    running: dict[str, str | None] = field(default_factory=dict)  # query id → response id (once created)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # response id → its response.created
    watches: dict[str, str] = field(default_factory=dict)  # watch id → text
    last_stats: dict[str, Any] | None = None
    next_query: int = 1
    next_watch: int = 1
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class Printer:
    """Formats server events for a terminal. One answer streams at a time; answers arriving meanwhile are
    buffered and printed whole when the streaming one is done, so concurrent answers never interleave."""

    def __init__(self, out: TextIO, state: ChatState) -> None:
        self.out = out
        self.s = state
        self.active: str | None = None  # response id streaming to the terminal
        self.mid_line = False  # the active answer's line is open
        self.waiting: dict[str, list[str]] = {}  # response id → buffered text, in arrival order
        self.finished: dict[str, dict[str, Any]] = {}  # buffered responses already done → their done event

    def line(self, text: str) -> None:
        self._break()
        self.out.write(text + "\n")
        self.out.flush()

    def _break(self) -> None:
        if self.mid_line:
            self.out.write("\n")
            self.mid_line = False

    def _write(self, rid: str, text: str) -> None:
        if not self.mid_line:
            self.out.write(self._label(self.s.responses.get(rid, {})))
            self.mid_line = True
        self.out.write(text)
        self.out.flush()

    def _label(self, created: dict[str, Any]) -> str:
        kind = created.get("kind")
        cam = created.get("camera")
        if kind == "proactive":
            return f"[{cam} · scene {created.get('scene')} · proactive] "
        if kind == "watch":
            return f"[watch {created.get('watch_id')} · {cam}] "
        return f"{cam}> "

    def event(self, ev: dict[str, Any]) -> None:
        typ = ev.get("type")
        s = self.s
        if typ == "response.created":
            rid = ev["response_id"]
            s.responses[rid] = ev
            if ev.get("query_id") in s.running:
                s.running[ev["query_id"]] = rid
            if self.active is None:
                self.active = rid
            else:
                self.waiting[rid] = []
        elif typ == "response.delta":
            rid = ev["response_id"]
            if rid == self.active:
                self._write(rid, ev["delta"])
            elif rid in self.waiting:
                self.waiting[rid].append(ev["delta"])
        elif typ == "response.done":
            rid = ev["response_id"]
            if rid == self.active:
                self._finish(ev)
                self._next()
            elif rid in self.waiting:
                self.finished[rid] = ev
        elif typ == "scene.change":
            self.line(f"── {ev['camera']}: scene {ev['scene']} at {ev['pts']:.1f}s (score {ev['score']:.2f})")
        elif typ == "camera.state":
            reason = f" ({ev['reason']})" if ev.get("reason") else ""
            self.line(f"── {ev['camera']}: {ev['state']}{reason}")
        elif typ == "stats":
            s.last_stats = ev
        elif typ == "error":
            where = f" [{ev['event_id']}]" if ev.get("event_id") else ""
            self.line(f"! {ev['code']}{where}: {ev['message']}")
            if ev.get("event_type") == "query" and ev.get("event_id") in s.running:
                s.running.pop(ev["event_id"])
        elif typ == "session.created":
            s.cameras = [c["id"] for c in ev.get("cameras", [])]
            s.camera = ev["session"]["camera"]
            states = ", ".join(f"{c['id']} ({c.get('state')})" for c in ev.get("cameras", []))
            self.line(f"connected: cameras {states}; asking {s.camera}. /help for commands")
        elif typ == "session.updated":
            s.camera = ev["session"]["camera"]
            self.line(f"── now asking {s.camera}; proactive {'on' if ev['session']['proactive'] else 'off'}")
        elif typ == "watch.added":
            self.line(f"── watching {ev['id']} on {ev['camera']}: {ev['text']}")
        elif typ == "watch.removed":
            s.watches.pop(ev["id"], None)
            self.line(f"── watch {ev['id']} removed")
        if not s.running:
            s.idle.set()

    def _next(self) -> None:
        """Print the buffered answers in arrival order: finished ones whole, then stream the first unfinished."""
        self.active = None
        while self.waiting:
            rid = next(iter(self.waiting))
            text = "".join(self.waiting.pop(rid))
            self.active = rid
            if text:
                self._write(rid, text)
            done = self.finished.pop(rid, None)
            if done is None:
                return  # still streaming: its next deltas go straight out
            self._finish(done)
            self.active = None

    def _finish(self, ev: dict[str, Any]) -> None:
        s = self.s
        rid = ev["response_id"]
        created = s.responses.get(rid, {})
        if not self.mid_line and ev.get("text") and ev.get("status") == "completed":
            self._write(rid, ev["text"])  # an answer that came in one piece, without deltas
        if ev["status"] == "completed":
            usage = ev.get("usage") or {}
            ttft = ev.get("ttft_ms")
            info = f"{usage.get('completion_tokens', 0)} tokens" + (f", first after {ttft:.0f} ms" if ttft else "")
            tail = f"  ({info})" if created.get("kind") == "query" else ""
        elif ev["status"] == "cancelled":
            tail = "  (cancelled)"
        else:
            tail = f"  (failed: {ev.get('error') or 'unknown error'})"
        if not self.mid_line:
            self.out.write(self._label(created))
        self.out.write(tail + "\n")
        self.out.flush()
        self.mid_line = False
        s.responses.pop(rid, None)
        if created.get("query_id") in s.running:
            s.running.pop(created["query_id"])

    def stats(self) -> None:
        st = self.s.last_stats
        if st is None:
            self.line("── no statistics yet")
            return
        for cam, v in st.get("cameras", {}).items():
            self.line(
                f"── {cam}: {v.get('state', '?')}, frames {v.get('frames_in', 0)}, "
                f"dropped {v.get('frames_dropped', 0)}, tokens kept {v.get('tokens_kept', 0)}/"
                f"{v.get('tokens_total', 0)} (drop ratio {v.get('drop_ratio', 0):.2f})"
            )


def command_to_message(line: str, s: ChatState) -> dict[str, Any] | str | None:
    """Turn one input line into a client message, or a local action name ('quit', 'help', 'stats'), or None."""
    line = line.strip()
    if not line:
        return None
    if not line.startswith("/"):
        qid = f"q{s.next_query}"
        s.next_query += 1
        s.running[qid] = None
        s.idle.clear()
        return {"type": "query", "id": qid, "text": line}
    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd in ("/quit", "/exit", "/q"):
        return "quit"
    if cmd in ("/help", "/?"):
        return "help"
    if cmd == "/stats":
        return "stats"
    if cmd == "/cancel":
        target = arg or next(reversed(s.running), None)
        if target is None:
            return "nothing to cancel"
        return {"type": "query.cancel", "id": target}
    if cmd == "/watch":
        if not arg:
            return "usage: /watch <text>"
        wid = f"w{s.next_watch}"
        s.next_watch += 1
        s.watches[wid] = arg
        return {"type": "watch.add", "id": wid, "text": arg}
    if cmd == "/unwatch":
        if not arg:
            return "usage: /unwatch <id>"
        return {"type": "watch.remove", "id": arg}
    if cmd == "/camera":
        if not arg:
            return f"usage: /camera <id> (cameras: {', '.join(s.cameras)})"
        return {"type": "session.update", "camera": arg}
    if cmd == "/proactive":
        if arg not in ("on", "off"):
            return "usage: /proactive on|off"
        return {"type": "session.update", "proactive": arg == "on"}
    return f"unknown command {cmd} (/help)"


def _start_stdin_thread(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None], fd: int) -> None:
    """Read lines from `fd` in a daemon thread. os.read, not input(): a daemon thread blocked in input() holds the
    stdin buffer's lock, and the interpreter aborts at exit ("could not acquire lock for <stdin>")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read() -> None:
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    loop.call_soon_threadsafe(lines.put_nowait, pending)
                loop.call_soon_threadsafe(lines.put_nowait, _EOF)
                return
            pending += decoder.decode(chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r"))

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()


async def _receive(ws: ClientConnection, printer: Printer) -> None:
    async for raw in ws:
        try:
            ev = json.loads(raw)
        except ValueError:
            printer.line(f"! the server sent something that is not JSON: {str(raw)[:80]!r}")
            continue
        printer.event(ev)


async def _send_input(ws: ClientConnection, lines: asyncio.Queue[str | None], printer: Printer, s: ChatState) -> None:
    while True:
        line = await lines.get()
        if line is _EOF:
            # End of input: let running answers finish (bounded), then leave.
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    while s.running:
                        s.idle.clear()
                        await s.idle.wait()
            except TimeoutError:
                printer.line("── giving up on answers still running")
            return
        action = command_to_message(line, s)
        if action is None:
            continue
        if action == "quit":
            return
        if action == "help":
            printer.line(HELP)
        elif action == "stats":
            printer.stats()
        elif isinstance(action, str):
            printer.line(action)
        else:
            await ws.send(json.dumps(action))


async def chat(url: str, token: str | None, camera: str | None, out: TextIO) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        ws = await connect(url, additional_headers=headers, open_timeout=10, max_size=16 * 2**20)
    except InvalidStatus as e:
        code = e.response.status_code
        hint = " (wrong or missing token: --token or LIVESIGHT_TOKEN)" if code == 401 else ""
        raise ChatError(f"{url} refused the connection: HTTP {code}{hint}") from None
    except InvalidURI as e:
        raise ChatError(f"not a WebSocket URL: {e}") from None
    except (OSError, TimeoutError) as e:
        raise ChatError(f"cannot connect to {url}: {getattr(e, 'strerror', None) or e}") from None
    state = ChatState()
    printer = Printer(out, state)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _start_stdin_thread(asyncio.get_running_loop(), lines, sys.stdin.fileno())
    async with ws:
        if camera:
            await ws.send(json.dumps({"type": "session.update", "camera": camera}))
        receiver = asyncio.create_task(_receive(ws, printer), name="chat-receive")
        sender = asyncio.create_task(_send_input(ws, lines, printer, state), name="chat-input")
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (receiver, sender):
                t.cancel()
            results = await asyncio.gather(receiver, sender, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception) and not isinstance(r, ConnectionClosed):
                raise r
        if receiver in done:  # the server went away first
            code, reason = ws.close_code, ws.close_reason
            why = f"code {code}{' ' + reason if reason else ''}" if code is not None else "no close frame"
            printer.line(f"── connection closed by the server ({why})")
            return 1
    return 0


def run_chat(args: argparse.Namespace) -> int:
    url: str = args.url
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        url = url.replace(parts.scheme, "ws" if parts.scheme == "http" else "wss", 1)
    token = args.token or os.environ.get("LIVESIGHT_TOKEN")
    return asyncio.run(chat(url, token, args.camera, sys.stdout))
