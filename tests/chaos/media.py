"""Generated sources for the chaos test, each a real encoded stream (MPEG-TS, MPEG-2 video) decoded by PyAV:
still, moving, hard cuts, a file truncated mid-stream, a resolution change mid-stream, a one-frame file, and a
network source that stalls (a TCP server that sends six seconds of video, then nothing, with the socket open; less
than PyAV's 5 s probe would leave the camera `connecting` until the socket timeout instead)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 10


def _frame(kind: str, i: int, w: int, h: int) -> np.ndarray:
    img = np.full((h, w, 3), 70, np.uint8)
    if kind == "still":
        img[h // 4 : h // 2, w // 4 : w // 2] = (200, 180, 40)
    elif kind == "moving":
        x = (i * 9) % (w - 32)
        img[h // 3 : h // 3 + 32, x : x + 32] = (240, 60, 60)
    elif kind == "cuts":  # a new shot every 1.5 s: a different background and square
        shot = i // 15
        img[:] = ((shot * 67) % 256, (shot * 131) % 256, (shot * 29) % 256)
        x = (i * 5) % (w - 40)
        img[h // 2 : h // 2 + 40, x : x + 40] = (255 - img[0, 0]).astype(np.uint8)
    return img


def write_ts(path: Path, kind: str, *, seconds: float, size: tuple[int, int] = (320, 240), start: int = 0) -> Path:
    w, h = size
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i in range(start, start + max(1, round(seconds * FPS))):
            frame = av.VideoFrame.from_ndarray(_frame(kind, i, w, h), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def make_media(d: Path) -> dict[str, Path]:
    """All file sources in `d` (a few hundred KB)."""
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "still": write_ts(d / "still.ts", "still", seconds=4),
        "moving": write_ts(d / "moving.ts", "moving", seconds=4),
        "cuts": write_ts(d / "cuts.ts", "cuts", seconds=6),
        "oneframe": write_ts(d / "oneframe.ts", "moving", seconds=0.1),
        "stallclip": write_ts(d / "stallclip.ts", "moving", seconds=9),  # served 2/3, then silence
    }
    full = write_ts(d / "full.ts", "cuts", seconds=4).read_bytes()
    (d / "truncated.ts").write_bytes(full[: len(full) * 6 // 10 + 77])  # cut mid-packet
    files["truncated"] = d / "truncated.ts"
    a = write_ts(d / "a.ts", "moving", seconds=2, size=(320, 240)).read_bytes()
    b = write_ts(d / "b.ts", "moving", seconds=2, size=(480, 200), start=20).read_bytes()
    (d / "reschange.ts").write_bytes(a + b)  # MPEG-TS concatenates: the decoder sees a new sequence header
    files["reschange"] = d / "reschange.ts"
    return files


@contextlib.asynccontextmanager
async def stalling_server(
    clip: Path, *, send_fraction: float = 2 / 3
) -> AsyncIterator[tuple[str, Callable[[], int], Callable[[], None]]]:
    """tcp://127.0.0.1:PORT: each connection gets the first part of `clip`, then silence (the socket stays open
    until the client gives up). Yields the URL, a function counting connections so far, and `close` (stop
    listening and close every connection: a blocked reader sees the end of the stream)."""
    data = await asyncio.to_thread(clip.read_bytes)
    part = data[: int(len(data) * send_fraction)]
    connections = 0
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writers.add(writer)
        try:
            writer.write(part)
            await writer.drain()
            await reader.read()  # until the client closes
        except (ConnectionError, OSError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def close() -> None:
        server.close()
        for w in list(writers):
            w.close()

    try:
        yield f"tcp://127.0.0.1:{port}", lambda: connections, close
    finally:
        close()
        await server.wait_closed()
