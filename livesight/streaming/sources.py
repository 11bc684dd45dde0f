"""Video sources through PyAV, one code path: RTSP/HTTP URLs, webcams (v4l2), files, lavfi graphs, builtin:demo.

`SourceSpec.parse(cfg)` says what a source string means; `open_source(spec)` opens it (blocking: call from the
decode thread) and yields decoded frames as (pts seconds, av.VideoFrame | ndarray). Errors are turned into a
one-line reason, and classified: permanent (no such file/device, not a video, no decoder) or transient (connection
refused, host unreachable, timeout, stream ended, authentication failed) — a live camera is retried only on transient
errors, and after an authentication failure only at the slowest backoff rate (`slow`): a camera that is rebooting
can answer 401 for a moment, while hammering one with a wrong password gets the daemon's address locked out.

Secrets: a source URL's credentials (`user:password@`, `?token=…`) are redacted once, here, where the source is
parsed: `spec.shown` is the URL as it may be shown, `spec.secrets` the strings every error text is scrubbed of
(FFmpeg's messages repeat the URL they were given). Nothing outside `open_source` reads `spec.url`.

Failures are named for what they are: the server's 401/403 is "authentication failed"; when FFmpeg only says
"invalid data" or "I/O error" at open, one TCP connection to the source's host tells "host not found", "host
unreachable", "connection refused" and "timed out" from "not a video stream" (the host answered).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np

from livesight.config import NETWORK_SCHEMES, CameraConfig
from livesight.redact import redact_url, scrub, url_secrets
from livesight.streaming.demo_stream import FPS as DEMO_FPS
from livesight.streaming.demo_stream import demo_frames

SOCKET_TIMEOUT_US = 5_000_000
DIAGNOSE_TIMEOUT_S = 3.0  # the TCP connection that tells an unreachable host from a stream that is not video
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443, "http": 80, "https": 443}


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "network" | "webcam" | "file" | "lavfi" | "builtin"
    url: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    shown: str = ""  # the source as it may be shown (credentials redacted); filled from url
    secrets: tuple[str, ...] = ()  # the strings error texts are scrubbed of; filled from url

    def __post_init__(self) -> None:
        if not self.shown:
            object.__setattr__(self, "shown", redact_url(self.url))
        if not self.secrets:
            object.__setattr__(self, "secrets", url_secrets(self.url))

    @property
    def live(self) -> bool:
        """A live source that ends was disconnected (reconnect); a file that ends has ended."""
        return self.kind != "file"

    @property
    def paced(self) -> bool:
        """Sources that decode faster than real time unless paced."""
        return self.kind in ("file", "lavfi", "builtin")

    @staticmethod
    def parse(source: str, cfg: CameraConfig | None = None) -> SourceSpec:
        if source.startswith(NETWORK_SCHEMES):
            opts = {"timeout": str(SOCKET_TIMEOUT_US)}
            if source.startswith(("rtsp://", "rtsps://")):
                opts["rtsp_transport"] = "tcp"
            return SourceSpec("network", source, None, opts)
        if source.startswith("/dev/video"):
            opts: dict[str, str] = {}
            if cfg is not None and cfg.width and cfg.height:
                opts["video_size"] = f"{cfg.width}x{cfg.height}"
            return SourceSpec("webcam", source, "v4l2", opts)
        if source.startswith("lavfi:"):
            return SourceSpec("lavfi", source.removeprefix("lavfi:"), "lavfi")
        if source.startswith("builtin:"):
            name = source.removeprefix("builtin:")
            if name != "demo":
                raise ValueError(f"unknown builtin source {source!r} (known: builtin:demo)")
            return SourceSpec("builtin", name)
        return SourceSpec("file", os.path.expanduser(source))


class SourceFailure(Exception):
    def __init__(self, reason: str, *, permanent: bool, slow: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.slow = slow  # retry no faster than the backoff's cap (reconnect.max_s)


def describe_error(e: BaseException, spec: SourceSpec, *, opening: bool = False) -> SourceFailure:
    """A one-line reason (credentials scrubbed) and whether retrying can help. `opening`: the error came from opening
    a network source, where an unclear FFmpeg error is diagnosed with one TCP connection (blocking, bounded)."""
    if isinstance(e, SourceFailure):
        return SourceFailure(scrub(e.reason, spec.secrets), permanent=e.permanent, slow=e.slow)
    en = getattr(e, "errno", None)
    where = spec.shown
    network = spec.kind == "network"
    if isinstance(e, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        code = 401 if isinstance(e, av.error.HTTPUnauthorizedError) else 403
        # retried, but slowly: a rebooting camera may refuse for a moment, while retrying a wrong password quickly
        # gets the daemon's address locked out by cameras that count failed logins
        return SourceFailure(
            f"authentication failed: the server answered {code} (check the user name and password in the source "
            f"URL): {where}",
            permanent=False,
            slow=True,
        )
    if isinstance(e, av.error.HTTPNotFoundError):
        return SourceFailure(f"no such stream on the server (404; check the URL's path): {where}", permanent=False)
    if isinstance(e, av.error.HTTPError):
        return SourceFailure(f"the server refused the stream ({_first_line(e, spec)}): {where}", permanent=False)
    if isinstance(e, FileNotFoundError) or en == errno.ENOENT:
        what = "device" if spec.kind == "webcam" else "file"
        return SourceFailure(f"no such {what}: {where}", permanent=True)
    if isinstance(e, PermissionError) or en == errno.EACCES:
        return SourceFailure(f"permission denied: {where}", permanent=spec.kind == "file")
    if isinstance(e, ConnectionRefusedError) or en == errno.ECONNREFUSED:
        return SourceFailure(f"connection refused (nothing listens at {_host_port(spec) or where})", permanent=False)
    if isinstance(e, TimeoutError) or en == errno.ETIMEDOUT:
        return SourceFailure("timed out (no data from the source)", permanent=False)
    if en in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return SourceFailure(f"host unreachable: {_host_port(spec) or where}", permanent=False)
    unclear = isinstance(e, av.error.InvalidDataError) or (isinstance(e, OSError) and en in (errno.EIO, None))
    if network and opening and unclear:
        why = diagnose_network(spec)
        if why is not None:
            return SourceFailure(why, permanent=False)
    if isinstance(e, av.error.InvalidDataError):
        what = "video file" if spec.kind == "file" else "video stream"
        return SourceFailure(f"not a {what} (FFmpeg cannot read it: invalid data): {where}", permanent=not spec.live)
    return SourceFailure(f"{type(e).__name__}: {_first_line(e, spec)}", permanent=spec.kind == "file")


def _first_line(e: BaseException, spec: SourceSpec) -> str:
    """The error's own words, scrubbed: FFmpeg's message without the URL PyAV appends to it."""
    strerror = getattr(e, "strerror", None) if isinstance(e, av.error.FFmpegError) else None
    text = (strerror if isinstance(strerror, str) and strerror else str(e)).strip()
    return scrub(text.splitlines()[0], spec.secrets)[:300] if text else type(e).__name__


def _host_port(spec: SourceSpec) -> str | None:
    try:
        parts = urlsplit(spec.url)
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def diagnose_network(spec: SourceSpec, timeout_s: float = DIAGNOSE_TIMEOUT_S) -> str | None:
    """Why a network source could not be opened, from one TCP connection to its host: a reason, or None when the
    host answers (the stream itself is the problem) or the scheme is not TCP (udp://, srt://). Blocking."""
    try:
        parts = urlsplit(spec.url)
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    target = _host_port(spec)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"host not found (the name {host!r} does not resolve)"
    except ConnectionRefusedError:
        return f"connection refused (nothing listens at {target})"
    except TimeoutError:
        return f"timed out connecting to {target} (host unreachable or a firewall drops the connection)"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"host unreachable: {target}"
        return f"cannot connect to {target}: {e.strerror or type(e).__name__}"


@dataclass
class StreamInfo:
    codec: str
    width: int
    height: int
    fps: float | None  # declared


def open_source(spec: SourceSpec) -> tuple[StreamInfo, Iterator[tuple[float | None, Any]], Any]:
    """Open a source (blocking). Returns (info, frames, closer) where frames yields (pts_s, frame)."""
    if spec.kind == "builtin":
        from livesight.streaming.demo_stream import HEIGHT, WIDTH

        return StreamInfo("builtin", WIDTH, HEIGHT, DEMO_FPS), demo_frames(), None
    try:
        container = av.open(spec.url, format=spec.format, options=spec.options, timeout=SOCKET_TIMEOUT_US / 1e6)
    except Exception as e:  # named for what it is (and scrubbed of credentials) here, where it is still clear
        raise describe_error(e, spec, opening=True) from None
    try:
        if not container.streams.video:
            raise SourceFailure(f"no video stream in {spec.shown}", permanent=True)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        info = StreamInfo(ctx.name, ctx.width, ctx.height, float(rate) if rate else None)
    except BaseException:
        container.close()
        raise

    def frames() -> Iterator[tuple[float | None, Any]]:
        for frame in container.decode(stream):
            yield (float(frame.time) if frame.time is not None else None), frame

    return info, frames(), container


def to_rgb(frame: Any) -> np.ndarray:
    if isinstance(frame, np.ndarray):
        return frame
    return frame.to_ndarray(format="rgb24")
