"""Video sources through PyAV, one code path: RTSP/HTTP URLs, webcams (v4l2), files, lavfi graphs, builtin:demo.

`SourceSpec.parse(cfg)` says what a source string means; `open_source(spec)` opens it (blocking: call from the
decode thread) and yields decoded frames as (pts seconds, av.VideoFrame | ndarray). Errors are turned into a
one-line reason, and classified: permanent (no such file/device, not a video, no decoder) or transient
(connection refused, timeout, stream ended) — a live camera is retried only on transient errors.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from livesight.config import CameraConfig
from livesight.streaming.demo_stream import FPS as DEMO_FPS
from livesight.streaming.demo_stream import demo_frames

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "srt://", "udp://", "tcp://")
SOCKET_TIMEOUT_US = 5_000_000


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "network" | "webcam" | "file" | "lavfi" | "builtin"
    url: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

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
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def describe_error(e: BaseException, spec: SourceSpec) -> SourceFailure:
    """A one-line reason and whether retrying can help."""
    en = getattr(e, "errno", None)
    if isinstance(e, SourceFailure):
        return e
    if isinstance(e, FileNotFoundError) or en == errno.ENOENT:
        what = "device" if spec.kind == "webcam" else "file"
        return SourceFailure(f"no such {what}: {spec.url}", permanent=True)
    if isinstance(e, PermissionError) or en == errno.EACCES:
        return SourceFailure(f"permission denied: {spec.url}", permanent=spec.kind == "file")
    if isinstance(e, av.error.InvalidDataError):
        return SourceFailure(f"not a valid video stream (invalid data): {spec.url}", permanent=spec.kind == "file")
    if isinstance(e, ConnectionRefusedError) or en == errno.ECONNREFUSED:
        return SourceFailure("connection refused", permanent=False)
    if isinstance(e, TimeoutError) or en == errno.ETIMEDOUT:
        return SourceFailure("timed out (no data from the source)", permanent=False)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return SourceFailure(f"{type(e).__name__}: {msg}", permanent=spec.kind == "file")


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
    container = av.open(spec.url, format=spec.format, options=spec.options, timeout=SOCKET_TIMEOUT_US / 1e6)
    try:
        if not container.streams.video:
            raise SourceFailure(f"no video stream in {spec.url}", permanent=True)
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
