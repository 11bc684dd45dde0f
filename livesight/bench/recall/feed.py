"""Runs the synthetic cameras through the real parts that turn frames into timeline entries, on the stream's own
clock (pts from 0, wall_time = EPOCH + pts; nothing sleeps, nothing reads time.time() for a timestamp).

Per camera, as a camera's decode thread and the model worker do it (streaming/sampler.py, daemon/frame_pipeline.py):

    decoded frames at 10 fps ──► the cut tap's judge (memory/tap_cuts.py: 64x48 frames, event-triggered sampling)
                             └─► Sampler at the shipped sample_fps (+ HeldSampling) ──► sampled frame
    sampled frame ──► backend.prepare ──► DTD (pixel mode, BENCH_DTD) ──► vision encoder (tiny model, when DTD asks)
                  ──► DTD decision ──► scene detector (dtd, with its cut tap) ──► EntryTracker (timeline/keyframes.py)
    closed entry  ──► the daemon's TimelineCapture (daemon/timeline/capture.py: keyframe JPEGs at keyframe_px and
                      keyframe_quality, TimelineStore.add_entry: a real SQLite file through the event log's writer
                      thread, real JPEG files), its picture thread replaced by a call in place
    uncaptioned entries ──► timeline/backfill.py (newest first, their stored keyframes read back and decoded, on the
                      stream's clock) with the oracle describer in the model's place ──► store.set_caption
    (and the store's retention, on the stream's clock too)

The first camera also feeds a live CameraMemory (the tiny model's KV cache) for the TTFT comparison; a second one
is fed only the stream's first minute, and a second store gets only the entries that closed in that minute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from livesight.bench.recall import oracle
from livesight.bench.recall.stream import CAMERAS, CameraPainter, World
from livesight.config import CameraConfig, DTDConfig, MemoryConfig, SceneConfig, TimelineConfig
from livesight.daemon.scene_detectors import dtd_detector
from livesight.daemon.timeline.capture import TimelineCapture
from livesight.memory.camera_memory import CameraMemory
from livesight.memory.event_log import EventLog
from livesight.model.dtd import DTD
from livesight.model.qwen import QwenBackend
from livesight.streaming.sampler import HeldSampling, Sampler
from livesight.timeline.backfill import Backfill
from livesight.timeline.keyframes import ClosedEntry, EntryTracker
from livesight.timeline.retention import Retention
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.types import TapSignal

# DTD decides from pixels here: the tiny model's random vision tower makes feature-mode decisions noise (a blue box
# entering a parked view keeps no token), so "the frame with the most kept tokens" would mean nothing; pixel mode is
# model-independent and keeps what a real model's feature mode keeps where content changes (docs/dtd.md).
BENCH_DTD = DTDConfig(mode="pixel", threshold=0.04)
DECODE_FPS = 10.0  # the synthetic camera's frame rate: every decoded frame goes to the cut tap (cut_tap_fps 10)
SAMPLE_FPS = float(CameraConfig.model_fields["sample_fps"].default)  # the shipped default (1 fps)
CAPTION_EVERY_S = 300.0  # stream seconds between the oracle's passes over uncaptioned entries (a backfill)


def in_place(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
    """TimelineCapture's `submit` (the daemon's picture thread), run at once: a finished future."""
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
    try:
        fut.set_result(fn(*args))
    except Exception as e:  # the capture counts it (entries_lost), as it does for the picture thread's failures
        fut.set_exception(e)
    return fut


def keyframe_bytes_on_disk(store: TimelineStore) -> dict[str, tuple[int, int]]:
    """camera → (JPEG files, bytes) under the store's keyframe folder."""
    out: dict[str, tuple[int, int]] = {}
    if store.dir is None or not store.dir.is_dir():
        return out
    for cam in sorted(p for p in store.dir.iterdir() if p.is_dir()):
        sizes = [f.stat().st_size for f in cam.glob("*.jpg")]
        out[cam.name] = (len(sizes), sum(sizes))
    return out


def open_store(path: Path, cfg: TimelineConfig) -> tuple[EventLog, TimelineStore]:
    """A real timeline store whose retention runs on the stream's clock (`Feed` calls it at every caption pass)
    instead of the wall clock's thread: by the wall clock the stream's fixed epoch is months old, and its keyframes
    would be deleted as past retention_days."""
    log = EventLog(path)
    store = TimelineStore(log, keyframe_dir(str(path)), cfg)
    store.open()
    if store.retention is not None:
        store.retention.stop()
    store.retention = Retention(store)  # not started: run_once(now=stream time)
    return log, store


@dataclass
class Rig:
    """One camera's parts."""

    camera: str
    painter: CameraPainter
    sampler: Sampler
    held: HeldSampling
    judge: Any  # TapCuts or None
    dtd: DTD
    detector: Any
    tracker: EntryTracker
    waiting: list[tuple[float, bool]] = field(default_factory=list)  # sampled (pts, event) not yet processed
    frames: int = 0
    encoded: int = 0
    scene_changes: int = 0


@dataclass
class FeedStats:
    frames: int = 0
    encoded: int = 0
    scene_changes: int = 0
    entries: int = 0
    keyframes: int = 0
    keyframe_bytes: dict[str, int] = field(default_factory=dict)  # per camera, the files on disk
    keyframes_per_camera: dict[str, int] = field(default_factory=dict)
    captioned: int = 0
    capture: dict[str, Any] = field(default_factory=dict)  # TimelineCapture.health()
    stream_s: float = 0.0
    wall_s: float = 0.0
    caption_ms: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)

    def add_stage(self, name: str, s: float) -> None:
        self.stage_s[name] = self.stage_s.get(name, 0.0) + s


class Feed:
    def __init__(
        self,
        world: World,
        backend: QwenBackend,
        store: TimelineStore,
        *,
        first_minute_store: TimelineStore | None = None,
        memory_camera: str | None = None,
        timeline: TimelineConfig | None = None,
        dtd: DTDConfig = BENCH_DTD,
    ) -> None:
        self.world = world
        self.dtd_cfg = dtd
        self.backend = backend
        self.store = store
        self.first_store = first_minute_store
        self.cfg = timeline or TimelineConfig()
        self.scene_cfg = SceneConfig()
        self.stats = FeedStats()
        self.now = world.epoch  # the stream's clock (the backfill's too)
        self.capture = TimelineCapture(store, self.cfg, flat_level=self.scene_cfg.flat_level, submit=in_place)
        self.capture_first = (
            TimelineCapture(first_minute_store, self.cfg, flat_level=self.scene_cfg.flat_level, submit=in_place)
            if first_minute_store is not None
            else None
        )
        self.rigs = [self._rig(c) for c in world.cameras]
        self.memory: CameraMemory | None = None
        self.memory_1min: CameraMemory | None = None
        self.memory_camera = memory_camera
        if memory_camera is not None:
            self.memory = CameraMemory(memory_camera, backend, MemoryConfig(database=None))
            self.memory_1min = CameraMemory(memory_camera, backend, MemoryConfig(database=None))

    def _rig(self, camera: str) -> Rig:
        detector, tap = dtd_detector(self.scene_cfg, camera, sample_fps=SAMPLE_FPS, dtd_mode=self.dtd_cfg.mode)
        sampler = Sampler(SAMPLE_FPS)
        rig_ref: list[Rig] = []

        def send(pts: float, _frame: Any, event: bool) -> None:
            rig_ref[0].waiting.append((pts, event))

        rig = Rig(
            camera=camera,
            painter=CameraPainter(self.world, camera),
            sampler=sampler,
            held=HeldSampling(sampler, send),
            judge=tap.judge if tap is not None else None,
            dtd=DTD(self.dtd_cfg),
            detector=detector,
            tracker=self.capture.tracker(camera, scene=1),
        )
        rig_ref.append(rig)
        return rig

    # ---- the clock ---------------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> FeedStats:
        """The whole stream, every camera in step (decoded frame by decoded frame), then every entry closed
        (the cameras stop) and captioned."""
        t_start = time.perf_counter()
        n = round(self.world.duration_s * DECODE_FPS)
        next_caption = CAPTION_EVERY_S
        epoch = self.world.epoch
        for k in range(n):
            pts = k / DECODE_FPS
            self.now = epoch + pts
            for rig in self.rigs:
                t0 = time.perf_counter()
                signal = TapSignal.NONE
                if rig.judge is not None:  # what FrameTap.offer does with a frame already at the tap's size
                    signal = rig.judge.push(pts, epoch + pts, rig.painter.small(pts))
                rig.held.frame(pts, None, signal, rig.sampler.take(pts))
                self.stats.add_stage("decode + cut tap", time.perf_counter() - t0)
                while rig.waiting:
                    self._frame(rig, *rig.waiting.pop(0))
            if pts >= next_caption:
                self._caption_pass()
                next_caption += CAPTION_EVERY_S
                if progress is not None:
                    progress(pts)
        for rig in self.rigs:
            rig.held.flush()
            while rig.waiting:
                self._frame(rig, *rig.waiting.pop(0))
        asyncio.run(self.capture.close())  # the cameras stop: every open entry closed and written
        self.now = epoch + self.world.duration_s + 3600.0  # and the backfill catches up (past its grace)
        self._caption_pass()
        self.stats.capture = self.capture.health()
        self.stats.entries = self.stats.capture["entries_written"]  # (those closed at the stop included)
        for cam, (n_files, size) in keyframe_bytes_on_disk(self.store).items():
            self.stats.keyframes_per_camera[cam], self.stats.keyframe_bytes[cam] = n_files, size
        self.stats.keyframes = sum(self.stats.keyframes_per_camera.values())
        self.stats.stream_s = self.world.duration_s
        self.stats.wall_s = time.perf_counter() - t_start
        return self.stats

    def _frame(self, rig: Rig, pts: float, _event: bool) -> None:
        wall = self.world.epoch + pts
        t0 = time.perf_counter()
        rgb = rig.painter.full(pts)
        t1 = time.perf_counter()
        p = self.backend.prepare(rgb)
        enc = self.backend.encode([p])[0] if rig.dtd.precheck(p, pts) else None
        t2 = time.perf_counter()
        step = rig.dtd.decide(rig.camera, pts, wall, p, enc)
        change = rig.detector.update(step, p, 0)
        closed = rig.tracker.update(pts, wall, p, step.kept, change, full=step.full)
        t3 = time.perf_counter()
        rig.frames += 1
        self.stats.frames += 1
        if enc is not None:
            self.stats.encoded += 1
        if change is not None:
            self.stats.scene_changes += 1
        if rig.camera == self.memory_camera:
            tokens = enc.tokens if enc is not None and not step.encoder_skipped else None
            for mem in (self.memory, self.memory_1min) if pts < 60.0 else (self.memory,):
                assert mem is not None
                if change is not None and mem.on_scene_change(change):
                    mem.caption_pending()
                mem.add_step(step, tokens)
                while mem.maintenance_step():
                    pass
        t4 = time.perf_counter()
        self._write(rig, closed)
        t5 = time.perf_counter()
        self.stats.add_stage("render", t1 - t0)
        self.stats.add_stage("prepare + pre-check + encoder", t2 - t1)
        self.stats.add_stage("DTD + scene detector + entry tracker", t3 - t2)
        self.stats.add_stage("live memory (one camera)", t4 - t3)
        self.stats.add_stage("keyframe JPEGs + store", t5 - t4)

    def _write(self, rig: Rig, closed: list[ClosedEntry]) -> None:
        if not closed:
            return
        self.capture.closed(tuple(closed))
        if self.capture_first is not None:
            first = tuple(c for c in closed if c.entry.end_pts is not None and c.entry.end_pts <= 60.0)
            if first:
                self.capture_first.closed(first)
        self.stats.entries += len(closed)

    def _caption_pass(self) -> None:
        """The backfill (timeline/backfill.py, on the stream's clock) captions every entry still without one, newest
        first, from its keyframes as stored (read back from disk and decoded), with the oracle as the describer."""
        t0 = time.perf_counter()
        for store in (self.store, self.first_store):
            if store is None:
                continue
            store.flush()
            if store.retention is not None:
                store.retention.run_once(now=self.now)
            backfill = Backfill(store, clock=lambda: self.now)
            while True:
                backfill.refresh()
                todo = backfill.peek()
                if todo is None:
                    break
                backfill.take(todo)
                place = CAMERAS[todo.camera]
                if backfill.caption(todo, partial(_oracle, place=place)) is not None and store is self.store:
                    self.stats.captioned += 1
                store.flush()
        self.stats.caption_ms += (time.perf_counter() - t0) * 1000


def _oracle(images: list[np.ndarray], _times: list[float], _prompt: str, *, place: str) -> str:
    """The backfill's describer, the oracle in the model's place."""
    return oracle.describe(images, place)
