"""/healthz names every part with a state and why, and the top-level status follows them (real daemon, real HTTP)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from livesight.protocols.contract.api import ModelUnavailableError
from livesight.types import SceneChange
from tests.daemon.conftest import ask, daemon_config, running, until
from tests.daemon.test_faults import PoisonedBackend
from tests.helpers import http_get

CAM = [{"id": "cam", "source": "lavfi:testsrc2=size=320x240:rate=10", "sample_fps": 4}]


async def healthz(port: int) -> tuple[int, dict]:
    code, _, body = await http_get(port, "/healthz")
    return code, json.loads(body)


async def test_healthz_names_every_part(tiny_backend, tmp_path: Path) -> None:
    cfg = daemon_config(CAM, memory={"database": str(tmp_path / "events.sqlite")})
    async with running(cfg, tiny_backend) as (app, _task):
        await until(lambda: app.service.counters["cam"].frames_encoded >= 2, what="frames")
        code, h = await healthz(app.port)
        assert code == 200 and h["status"] == "ok", h
        assert h["cameras"]["cam"]["state"] == "live"
        w = h["worker"]
        assert w["state"] == "running" and w["frames_failed"] == 0 and 0 <= w["last_frame_age_s"] < 10
        assert set(w["queues"]) == {"responses", "cam"}
        gen = w["generation"]  # the generation scheduler's counters and budget
        assert gen["share_limit"] == 0.3 and gen["proactive_shed_stale"] == 0 and "captions_merged" in gen
        _, _, metrics = await http_get(app.port, "/metrics")
        assert b"livesight_generation_proactive_shed_stale_total 0.0" in metrics
        assert b"livesight_generation_captions_merged_total" in metrics
        assert b'livesight_frames_sampled_event_total{camera="cam"}' in metrics
        assert h["event_log"]["state"] == "ok" and h["event_log"]["rows_dropped"] == 0
        assert h["mqtt"] == {"state": "disabled"}


async def test_event_log_failures_are_visible(tiny_backend, tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    cfg = daemon_config(CAM, memory={"database": str(db)})
    async with running(cfg, tiny_backend) as (app, _task):
        log = app.event_log
        assert log is not None
        # the first scene is a row from the start, so its caption lands
        log.caption("cam", 1, "a test pattern")
        assert [(r["scene"], r["caption"]) for r in log.rows("scenes")] == [(1, "a test pattern")]
        # a failed commit: rows dropped and counted, the writer goes on, the daemon is degraded
        with sqlite3.connect(db) as other:
            other.execute("DROP TABLE scenes")
        log.scene(SceneChange("cam", 2, 1.0, 0.0, 1.0))
        log.flush()
        code, h = await healthz(app.port)
        assert code == 200 and h["status"] == "degraded"
        assert h["event_log"]["state"] == "degraded" and h["event_log"]["rows_dropped"] == 1
        assert "no such table: scenes" in h["event_log"]["reason"]
        # the writer thread dies (a malformed item stands for a bug in it): status failed, HTTP 503
        log._queue.put_nowait(42)
        await until(lambda: not log._writer.is_alive(), what="writer gone")
        code, h = await healthz(app.port)
        assert code == 503 and h["status"] == "failed" and h["event_log"]["state"] == "failed"
        assert "writer died" in h["event_log"]["reason"]


async def test_a_stalled_worker_is_shown(tiny_backend) -> None:
    backend = PoisonedBackend(tiny_backend)
    backend.poisoned = False
    cfg = daemon_config(CAM, worker={"stall_timeout_s": 0.3}, dtd={"mode": "off"})
    async with running(cfg, backend) as (app, _task):
        await until(lambda: app.service.counters["cam"].frames_encoded >= 1, what="a frame")
        backend.delay_s = 3.0  # the model hangs while frames wait
        await until(lambda: app.worker.health()["state"] == "stalled", within=10, what="stalled")
        code, h = await healthz(app.port)
        assert code == 200 and h["status"] == "degraded" and h["worker"]["state"] == "stalled"
        assert "none processed" in h["worker"]["reason"]
        backend.delay_s = 0.0
        await until(lambda: app.worker.health()["state"] == "running", within=15, what="recovered")


class BrokenFrames:
    """A frame source that says a frame waits but raises when asked for it: a bug outside any frame's boundary."""

    def get_nowait(self):
        raise RuntimeError("frame source broken")

    def __len__(self) -> int:
        return 1


async def test_a_dead_worker_is_shown_and_the_daemon_stays_up(tiny_backend) -> None:
    async with running(daemon_config(CAM), tiny_backend) as (app, task):
        await until(lambda: app.service.counters["cam"].frames_encoded >= 1, what="a frame")
        app.worker.lanes["cam"].frames = BrokenFrames()  # type: ignore[assignment]
        await until(lambda: app.worker.state == "failed", what="worker failed")
        code, h = await healthz(app.port)
        assert code == 503 and h["status"] == "failed"
        assert h["worker"]["state"] == "failed" and h["worker"]["reason"] == "RuntimeError: frame source broken"
        assert not task.done()  # still serving /healthz until stopped
        with pytest.raises(ModelUnavailableError, match="the model worker failed"):  # questions refused at once
            await ask(app, "cam")
