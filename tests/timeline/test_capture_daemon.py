"""Through the in-process daemon (echo backend and the tiny model): a generated H.264 clip with two cuts and a long
still shot → timeline rows in a real SQLite file: one entry per scene, the long one in chunk_s chunks, 1–3
keyframes per entry as JPEG files that decode, the entry the stop closed written too, captions filled."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from livesight.bench.scenes.suite import Spec, render, still, write_video
from livesight.daemon.app import App
from livesight.imaging import decode_jpeg
from livesight.memory.camera_memory import CAPTION_PROMPT
from livesight.model.echo import EchoBackend, EchoContext
from tests.daemon.conftest import daemon_config, running, until
from tests.helpers import http_get


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of one view, 24 s of another (a long still shot), 4 s of a third: cuts at 4 and 28 s."""
    path = tmp_path_factory.mktemp("clip") / "timeline.mp4"
    spec = Spec("timeline", [(still(0), 4.0), (still(1), 24.0), (still(2), 4.0)], [("cut", 0), ("cut", 0)], fps=10.0)
    frames, _, _ = render(spec)
    write_video(path, frames, spec.fps)
    return path


def config(clip: Path, db: Path, **model: Any):
    """Not paced (realtime False): decoded at once, every sampled frame waits for the model (queue_size: none
    dropped, so the chunks are exact)."""
    return daemon_config(
        [{"id": "cam", "source": str(clip), "sample_fps": 2, "realtime": False, "queue_size": 256}],
        model=model or {"backend": "echo", "preset": None, "max_new_tokens": 8},
        dtd={"mode": "pixel"},
        memory={"database": str(db), "timeline": {"chunk_s": 10}},
    )


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT id, scene, chunk, pts, end_pts, keyframes, caption, caption_state FROM timeline"
            " WHERE camera = 'cam' ORDER BY pts"
        ).fetchall()


async def run_clip(app_cfg, backend: Any, db: Path, *, captioned: bool = False) -> App:
    async with running(app_cfg, backend) as (app, _task):
        await until(lambda: app.worker is not None and app.service.states["cam"].state.value == "ended", 120, "EOF")
        await until(lambda: app.worker is not None and not len(app.worker.lanes["cam"].frames), 60, "frames done")
        if captioned:  # every closed entry gets a caption: its scene's live one, or else from its keyframes
            assert app.backfill is not None
            app.backfill.grace_s = 0.0
            await until(lambda: all(r[7] == "done" for r in rows(db)[:-1]), 120, "captions")
            # the entries are searchable over HTTP and their keyframes served
            status, _, body = await http_get(app.port, "/api/cameras/cam/scenes?limit=50")
            listed = json.loads(body)["scenes"]
            assert status == 200 and {r["id"] for r in listed} >= {r[0] for r in rows(db)[:-1]}
            url = next(r for r in listed if r["keyframes"])["keyframes"][-1]
            status, _, jpeg = await http_get(app.port, url)
            assert status == 200 and decode_jpeg(jpeg).ndim == 3
    return app


@pytest.mark.parametrize("model", ["echo", pytest.param("tiny", marks=pytest.mark.slow)])
async def test_every_scene_and_chunk_is_an_entry_with_keyframes_on_disk(clip: Path, tmp_path: Path, model: str) -> None:
    db = tmp_path / "ev.sqlite"
    if model == "echo":
        app = await run_clip(config(clip, db), EchoBackend(), db, captioned=True)
    else:
        from tests.helpers import tiny_backend

        cfg = config(clip, db, preset="tiny-random", max_new_tokens=4)
        app = await run_clip(cfg, tiny_backend(), db, captioned=True)
    got = rows(db)
    assert all(r[6] for r in got[:-1]), got  # captions filled (the last one: closed by the stop, backfilled later)

    closed = [r for r in got if r[4] is not None]
    assert closed == got, got  # the stop closed the last one
    scenes = sorted({r[1] for r in got})
    assert len(scenes) == 3, got  # one per scene: the two cuts found
    by_scene = {s: [r for r in got if r[1] == s] for s in scenes}
    first, long, last = (by_scene[s] for s in scenes)
    assert [r[2] for r in first] == [0] and [r[2] for r in last] == [0]
    assert [r[2] for r in long] == [0, 1, 2], long  # 24 s at chunk_s 10: three entries
    for a, b in itertools.pairwise(long):
        assert b[3] == pytest.approx(a[4]) and b[4] - b[3] <= 10.0 + 1e-6
    assert first[0][3] == pytest.approx(0.0, abs=0.6) and long[0][3] == pytest.approx(4.0, abs=0.6)
    assert last[0][3] == pytest.approx(28.0, abs=0.6) and last[0][4] > 30.0
    kf_dir = db.with_name(db.stem + ".keyframes") / "cam"
    for r in got:
        kfs = json.loads(r[5])
        assert 1 <= len(kfs) <= 3, r
        assert kfs[0]["role"] == "first" and all(r[3] - 1e-6 <= k["pts"] <= r[4] + 1e-6 for k in kfs)
        for i in range(len(kfs)):
            pic = decode_jpeg((kf_dir / f"{r[0]}-{i}.jpg").read_bytes())
            assert pic.ndim == 3 and max(pic.shape[:2]) <= 640 and pic.std() > 10  # a picture, not black
    # captions: each ended scene's live caption fills its entries; the rest are backfilled from their keyframes
    assert app.capture is not None and app.capture.entries_lost == 0
    h = app.service.health()["timeline_capture"]
    assert h["capture"]["entries_written"] == len(got) and h["capture"]["entries_lost"] == 0


async def test_backlog_drains_after_a_restart(clip: Path, tmp_path: Path) -> None:
    """Entries left without a caption (here: the model failed every caption) are captioned later, from their
    keyframes, newest first, once a daemon with a working model runs: the backlog survives the restart."""
    db = tmp_path / "ev.sqlite"

    app = App(config(clip, db), backend=NoCaptions())
    app_task = asyncio.create_task(app.run(), name="first-run")
    await asyncio.wait_for(app.wait_ready(), 60)
    await until(lambda: app.service.states["cam"].state.value == "ended", 120, "EOF")
    app.stop()
    await asyncio.wait_for(app_task, 60)
    assert app.worker is not None and app.worker.captions_failed > 0
    pending = [r for r in rows(db) if r[7] == "pending"]
    assert len(pending) == len(rows(db)) >= 5, rows(db)  # not one caption
    # the second run: the built-in demo stream, a working model: the backlog drains to 0
    cfg2 = daemon_config(
        [{"id": "cam", "source": "builtin:demo", "sample_fps": 1}],
        model={"backend": "echo", "preset": None, "max_new_tokens": 8},
        dtd={"mode": "pixel"},
        memory={"database": str(db)},
    )
    async with running(cfg2, EchoBackend()) as (app2, _):
        assert app2.backfill is not None
        app2.backfill.grace_s = 0.0
        b = app2.backfill
        await until(lambda: b.refreshes > 0 and b.backlog == 0 and b.backfilled >= len(pending), 60, "backlog drained")
        h = app2.service.health()["timeline_capture"]["backfill"]
        assert h["backlog"] == 0 and h["backfilled"] >= len(pending)
        _, _, metrics = await http_get(app2.port, "/metrics")
        assert b"livesight_timeline_backfill_backlog 0.0" in metrics
        assert f"livesight_timeline_backfilled_total {float(h['backfilled'])}".encode() in metrics
    after = {r[0]: r for r in rows(db)}
    for r in pending:
        assert after[r[0]][7] == "done" and after[r[0]][6].startswith("I hold"), after[r[0]]  # echo's own words


class FailingCaptions(EchoContext):
    def generate(self, question: str, **kw: Any) -> Any:
        if question.startswith(CAPTION_PROMPT[:20]):
            raise RuntimeError("the model is away")
        return super().generate(question, **kw)


class NoCaptions(EchoBackend):
    """Answers questions; every caption fails (the live ones and the backfill's)."""

    def new_context(self) -> EchoContext:
        return FailingCaptions(self._system_prompt)

    def describe(self, *a: Any, **k: Any) -> Any:
        raise RuntimeError("the model is away")


@pytest.mark.slow  # the live captions are given up first (4 tries with backoff)
async def test_with_a_model_server_the_backlog_is_captioned_from_keyframes_sent_as_images(
    clip: Path, tmp_path: Path
) -> None:
    """model.backend openai: the server fails every caption (the live ones are given up), then comes back: the
    entries are captioned from their keyframes, sent as images, and the backlog drains to 0."""
    from livesight.bench.remote.model_stub import Reply, Status, StubServer, last_text
    from tests.remote.helpers import remote_config
    from tests.remote.helpers import running as running_remote

    def caption(req: dict) -> bool:
        return last_text(req).startswith("Describe what happened in this scene")

    db = tmp_path / "ev.sqlite"
    async with StubServer([Status(500)], scripted=caption) as srv:
        cfg = remote_config(
            srv.base_url,
            cameras=[{"id": "cam", "source": str(clip), "sample_fps": 2, "realtime": False, "queue_size": 256}],
            memory={"database": str(db), "timeline": {"chunk_s": 10}},
        )
        async with running_remote(cfg) as app:
            await until(lambda: app.service.states["cam"].state.value == "ended", 120, "EOF")
            await until(lambda: len(rows(db)) >= 4 and all(r[4] for r in rows(db)[:-1]), 60, "entries closed")
            mem = app.worker.lanes["cam"].memory if app.worker is not None else None
            await until(lambda: mem is not None and mem.captions_pending == 0, 60, "live captions given up")
            assert all(r[7] == "pending" for r in rows(db)), rows(db)
            srv.then(Reply("a caption"))  # the server is back
            assert app.backfill is not None
            app.backfill.grace_s = 0.0
            closed = len(rows(db)) - 1  # the last one is open until the stop
            b = app.backfill
            await until(lambda: b.backfilled >= closed and b.backlog == 0, 60, "backlog drained")
            assert app.service.health()["timeline_capture"]["backfill"]["backfilled"] >= closed
    got = rows(db)
    assert all(r[6] == "a caption" for r in got[:-1]), got
    sent = [
        r
        for r in srv.requests
        if caption(r) and "Its keyframes, oldest first" in r["messages"][1]["content"][0]["text"]
    ]
    assert len(sent) >= closed
    parts = sent[0]["messages"][1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert 1 <= len(images) <= 3 and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
