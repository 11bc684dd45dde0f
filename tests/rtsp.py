"""The GStreamer RTSP test server (tests/rtsp_server.py, run with Debian's python3) as a restartable process.

server = RTSPServer(free_port(), auth="alice:secret")   # auth: the stream needs these credentials (else 401)
server.start(); server.url → rtsp://127.0.0.1:PORT/test; server.kill(); server.signal(SIGSTOP)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PY = "/usr/bin/python3"


def has_gst() -> bool:
    if not os.path.exists(SYSTEM_PY):
        return False
    r = subprocess.run(
        [
            SYSTEM_PY,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
    )
    return r.returncode == 0


class RTSPServer:
    def __init__(self, port: int, *, auth: str | None = None) -> None:
        self.port = port
        self.auth = auth
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"rtsp://127.0.0.1:{port}/test"

    def start(self) -> None:
        args = [SYSTEM_PY, str(SCRIPT), str(self.port)] + (["--auth", self.auth] if self.auth else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"RTSP server did not start: {line!r}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
