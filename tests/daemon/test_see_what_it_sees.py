"""The whole daemon in process (real decoded video with hard cuts, the tiny real model): the latest frame with its
DTD overlay, scene thumbnails named in `scene.change`, and the OpenAI API answering through the real service."""

from __future__ import annotations

import asyncio
import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import openai
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from livesight.config import parse_config
from tests.helpers import http_get
from tests.soak.common import app_running

TOKEN = "see-token"
SHOTS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]  # RGB background of each shot (hard cuts between)


def cut_clip(path: Path, seconds_per_shot: float = 3.0, fps: int = 10, size: tuple[int, int] = (224, 224)) -> Path:
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        i = 0
        for colour in SHOTS:
            for _ in range(round(seconds_per_shot * fps)):
                img = np.empty((h, w, 3), np.uint8)
                img[:] = colour
                x = (i * 5) % (w - 30)
                img[90:120, x : x + 30] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                for pkt in stream.encode(frame):
                    out.mux(pkt)
                i += 1
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def mean_rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).reshape(-1, 3).mean(axis=0)


@pytest.mark.slow
async def test_pictures_and_openai_on_the_real_daemon(tmp_path: Path) -> None:
    clip = cut_clip(tmp_path / "cuts.mp4")
    cfg = parse_config(
        {
            "cameras": [{"id": "cam", "source": str(clip), "sample_fps": 4, "loop": True}],
            "model": {"preset": "tiny-random", "max_new_tokens": 6},
            "dtd": {"mode": "pixel", "threshold": 0.04},
            "memory": {"token_budget": 2048, "database": str(tmp_path / "ev.sqlite")},
            "proactive": {"enabled": False},
            "server": {"host": "127.0.0.1", "port": 0, "auth_token": TOKEN, "stats_interval_s": 0.5},
        }
    )
    ok = {"Authorization": f"Bearer {TOKEN}"}
    async with app_running(cfg) as (app, handles):
        port = handles.port
        async with connect(f"ws://127.0.0.1:{port}/?token={TOKEN}") as ws:
            scene = None
            async with asyncio.timeout(60):
                while scene is None:
                    ev = json.loads(await ws.recv())
                    if ev["type"] == "scene.change":
                        scene = ev
        # the thumbnail named in the event: the new shot's first frame (a cut: one of the shot colours)
        assert scene["thumbnail"] == f"/api/cameras/cam/scenes/{scene['scene']}.jpg"
        status, _, body = await http_get(port, scene["thumbnail"], ok)
        assert status == 200 and body[:2] == b"\xff\xd8"
        rgb = mean_rgb(body)
        assert min(np.abs(rgb - np.array(c)).max() for c in SHOTS) < 40, rgb
        status, _, listing = await http_get(port, "/api/cameras/cam/scenes", ok)
        assert status == 200
        assert any(s["scene"] == scene["scene"] and s["thumbnail"] for s in json.loads(listing)["scenes"])
        status, _, first = await http_get(port, "/api/cameras/cam/scenes/1.jpg", ok)  # the first scene (no cut)
        assert status == 200 and np.abs(mean_rgb(first) - np.array(SHOTS[0])).max() < 40
        # unauthenticated: 401 and no image bytes
        status, _, body = await http_get(port, scene["thumbnail"])
        assert status == 401 and b"\xff\xd8" not in body

        # the latest frame as the model saw it (448x448 for a square source), with and without the overlay
        status, hdrs, plain = await http_get(port, "/api/cameras/cam/latest.jpg", ok)
        assert status == 200 and Image.open(io.BytesIO(plain)).size == (448, 448)
        status, _, over = await http_get(port, f"/api/cameras/cam/latest.jpg?overlay=1&token={TOKEN}")
        assert status == 200 and over != plain
        assert int(hdrs["x-frame-seq"]) >= 1

        # the OpenAI API, through the real service and model
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=TOKEN, max_retries=0, timeout=60
        ) as client:
            out = await client.chat.completions.create(
                model="livesight/cam", messages=[{"role": "user", "content": "What do you see?"}]
            )
            assert out.choices[0].finish_reason == "stop" and out.usage is not None
            assert out.usage.prompt_tokens > 0 and 1 <= out.usage.completion_tokens <= 6
            stream = await client.chat.completions.create(
                model="livesight/cam",
                messages=[{"role": "user", "content": "And now?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
        assert app.images is not None and app.images.thumbnails_written >= 1
