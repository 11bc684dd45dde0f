"""The daemon: wires cameras, the model worker, memory, the event log and the protocol servers.

Start order: event log → model (in a thread) → WebSocket/HTTP server (health answers "starting" meanwhile) →
cameras, model worker, stats, MQTT as named tasks of one TaskGroup.
Stop order (on `stop()`): cameras (decode threads end), pending responses cancelled (clients get
`response.done` cancelled), model worker (waits for the forward pass in flight), MQTT (publishes offline),
WebSocket server (clients closed with 1001), event log closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livesight.config import Config
from livesight.daemon.generation.responses import ResponseJob
from livesight.daemon.images import Images, ThumbnailStore, thumbnail_dir
from livesight.daemon.model_worker import CameraLane, MemoryLike, ModelWorker, WorkerSettings
from livesight.daemon.scene_detectors import SceneDetectors
from livesight.daemon.service import LaneStats, Service
from livesight.daemon.timeline.capture import BackfillJobs, TimelineCapture
from livesight.daemon.timeline.face import TimelineFace
from livesight.errors import contain
from livesight.fleet.topics import default_node_url
from livesight.memory.event_log import EventLog
from livesight.model.backend import Backend, GenerationResult
from livesight.model.dtd import DTD
from livesight.model.registry import load_backend
from livesight.model.vision_input import target_size
from livesight.protocols.mqtt.fleet_announcer import FleetAnnouncer
from livesight.protocols.web.fleet_link import FleetLink
from livesight.protocols.web.server import WebServer
from livesight.redact import scrub
from livesight.streaming.camera import Camera
from livesight.timeline.backfill import Backfill
from livesight.timeline.recall import Recaller
from livesight.timeline.semantic.index import open_semantic
from livesight.timeline.store import TimelineStore, keyframe_dir
from livesight.timeline.summary import Summaries
from livesight.timeline.when import parse_window, zone_of
from livesight.types import CameraState, CameraStatus, SceneChange

if TYPE_CHECKING:
    from livesight.daemon.generation.remote_responder import RemoteResponder
    from livesight.protocols.mqtt.bridge import MQTTBridge

log = logging.getLogger(__name__)


@dataclass
class AppHandles:
    """What a running app exposes to its caller (tests, the demo printer)."""

    service: Service
    port: int


class App:
    def __init__(self, cfg: Config, *, backend: Backend | None = None) -> None:
        self.cfg = cfg
        self.service = Service(
            [c.id for c in cfg.cameras],
            stats_source=self._lane_stats,
            max_watches=cfg.server.max_watches,
            generation_share=cfg.worker.generation_share,
            model_units=cfg.model.parallel,
            proactive_stale_s=cfg.proactive.stale_after_s,
        )
        self.service.on_state_shown = self._on_state_shown
        self._backend = backend
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self.port: int | None = None
        self.worker: ModelWorker | None = None
        self.event_log: EventLog | None = None
        self.timeline: TimelineStore | None = None  # the searchable scene timeline (livesight/timeline/)
        self.images: Images | None = None
        self.capture: TimelineCapture | None = None  # the timeline's entries and keyframes from the frame path
        self.backfill: Backfill | None = None  # captions for entries without one

    # ---- public ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> asyncio.Event:
        """Set once stop() was called (the drain timeout starts then)."""
        return self._stop

    async def wait_ready(self) -> AppHandles:
        await self._ready.wait()
        assert self.port is not None
        return AppHandles(self.service, self.port)

    async def run(self) -> None:
        cfg = self.cfg
        if cfg.memory.database:
            self.event_log = await asyncio.to_thread(
                EventLog, cfg.memory.database, max_rows=cfg.memory.max_rows, timeline=cfg.memory.timeline.enabled
            )
            self.service.health_parts["event_log"] = self.event_log.health
        else:
            self.service.health_parts["event_log"] = _disabled
        if self.event_log is not None and cfg.memory.timeline.enabled:
            self.timeline = await asyncio.to_thread(_open_timeline, cfg, self.event_log)
        if self.timeline is not None:  # summaries of past periods ("what happened in the last hour?", /summary)
            zone = await asyncio.to_thread(zone_of, cfg.memory.recall.timezone)
            self.service.summaries = Summaries(self.timeline.between, zone=zone)
        thumbs = thumbnail_dir(cfg.memory.database)
        store = ThumbnailStore(thumbs, cfg.memory.max_rows) if thumbs is not None else None
        self.images = Images(self.service.camera_ids(), self.service.frames, store=store, event_log=self.event_log)
        server = WebServer(
            self.service,
            cfg.server,
            images=self.images,
            fleet_link=FleetLink(token=cfg.fleet.token) if cfg.fleet is not None else None,
            timeline=TimelineFace(self.timeline, self.service.camera_ids(), store) if self.timeline else None,
            summaries=self.service,  # /api/cameras/<id>/summary (400 while service.summaries is None: no timeline)
        )
        try:
            await self.images.start()
            self._start_capture()
            self.port = await server.start()
            log.info(
                "listening on ws://%s:%d (chat page at http://%s:%d/)",
                cfg.server.host,
                self.port,
                cfg.server.host,
                self.port,
            )
            backend = self._backend or await asyncio.to_thread(load_backend, cfg.model)
            self._backend = backend
            info = backend.info
            self.service.model_info = {
                "name": info.name,
                "random_weights": info.random_weights,
                "device": info.device,
                "dtype": info.dtype,
            }
            if info.random_weights:
                log.warning(
                    "model %r has RANDOM weights: its answers are meaningless text "
                    "(DTD, scenes, memory, latency and the protocol are real)",
                    info.name,
                )
            await self._run_pipeline(backend)
        finally:
            await server.close()
            await self.images.close()
            if self.timeline is not None:
                await asyncio.to_thread(self.timeline.close)
            if self.event_log is not None:
                await asyncio.to_thread(self.event_log.close)

    # ---- internals ---------------------------------------------------------------------------------------

    async def _run_pipeline(self, backend: Backend) -> None:
        cfg = self.cfg
        cameras: list[Camera] = []
        lanes: list[CameraLane] = []
        detectors = SceneDetectors(cfg.scenes)
        info = backend.info

        def frame_size(height: int, width: int) -> tuple[int, int]:  # the decoder scales to the model's input
            return target_size(height, width, info.image_size, info.token_px)

        for cam_cfg in cfg.cameras:
            counters = self.service.counters[cam_cfg.id]
            start_scene = await asyncio.to_thread(self._start_scene, cam_cfg.id)
            self.service.frames.expect_first_scene(cam_cfg.id, start_scene)  # its thumbnail
            detector, tap = await detectors.build(
                cam_cfg.id, start_scene=start_scene, dtd_mode=cfg.dtd_for(cam_cfg).mode, sample_fps=cam_cfg.sample_fps
            )
            camera = Camera(
                cam_cfg, on_status=self._on_camera_status, counters=counters, tap=tap, frame_size=frame_size
            )
            cameras.append(camera)
            lanes.append(
                CameraLane(
                    camera=cam_cfg.id,
                    frames=camera.frames,
                    dtd=DTD(cfg.dtd_for(cam_cfg), backend.info.token_px, encoder=backend.info.vision_encoder),
                    memory=self._memory(cam_cfg.id, backend, start_scene),
                    detector=detector,
                    proactive=cfg.proactive_for(cam_cfg),
                    entries=self.capture.tracker(cam_cfg.id, start_scene) if self.capture is not None else None,
                )
            )
        self.worker = ModelWorker(
            WorkerSettings.from_config(cfg),
            backend,
            self.service,
            lanes,
            on_scene=self._on_scene,
            on_response=self._on_response,
            run_jobs=backend.info.vision_encoder,  # remote (openai): the remote responder runs the jobs
        )
        self.service.health_parts["worker"] = self.worker.health
        await self._recall(lanes)
        responder = self._remote_responder(backend, self.worker, lanes)
        for camera in cameras:
            camera.on_candidate = self.worker.pre_encode  # a likely scene start: encoded while the tap decides
        async with asyncio.TaskGroup() as tg:
            cam_tasks = [tg.create_task(self._contain_camera(c), name=f"camera:{c.cfg.id}") for c in cameras]
            worker_task = tg.create_task(self._supervise_worker(self.worker), name="model-worker")
            stats_task = tg.create_task(self._stats_loop(), name="stats")
            watchdog_task = tg.create_task(self._watchdog(self.worker), name="worker-watchdog")
            responder_task = None
            if responder is not None:
                responder_task = tg.create_task(self._contain_responder(responder), name="remote-responder")
            backfill_task = self._start_timeline(tg, backend, self.worker)
            mqtt_task = None
            if cfg.mqtt.enabled:
                from livesight.protocols.mqtt.bridge import MQTTBridge

                bridge = MQTTBridge(self.service, cfg.mqtt, images=self.images, fleet=self._fleet_announcer())
                self.service.health_parts["mqtt"] = bridge.health
                mqtt_task = tg.create_task(self._contain_mqtt(bridge), name="mqtt")
            else:
                self.service.health_parts["mqtt"] = _disabled
            self.service.ready = True
            self._ready.set()
            await self._stop.wait()
            log.info("stopping: cameras, responses, model worker, mqtt")
            for t in cam_tasks:
                t.cancel()
            await asyncio.gather(*cam_tasks, return_exceptions=True)
            self.service.responses.cancel_all()
            if responder_task is not None:
                responder_task.cancel()
            worker_task.cancel()
            stats_task.cancel()
            watchdog_task.cancel()
            if backfill_task is not None:
                backfill_task.cancel()
            if mqtt_task is not None:
                mqtt_task.cancel()
        await self._close_timeline()

    # ---- the timeline: entries and keyframes from the frame path, captions backfilled ---------------------------

    def _start_capture(self) -> None:
        """With the timeline store: the capture (entries and keyframes from the frame path) and the backfill."""
        if self.timeline is None or self.images is None:
            return
        cfg = self.cfg
        self.capture = TimelineCapture(
            self.timeline, cfg.memory.timeline, flat_level=cfg.scenes.flat_level, submit=self.images.submit
        )
        self.backfill = Backfill(self.timeline)

    def _start_timeline(
        self, tg: asyncio.TaskGroup, backend: Backend, worker: ModelWorker
    ) -> asyncio.Task[None] | None:
        """Closed entries go from the worker to the capture; the backfill's jobs to the generation queue."""
        if self.capture is None or self.backfill is None:
            return None
        capture, backfill = self.capture, self.backfill
        semantic = self.timeline.semantic if self.timeline is not None else None
        worker.on_entries = capture.closed
        self.service.responses.backfill = BackfillJobs(backfill, backend)
        self.service.health_parts["timeline_capture"] = lambda: {
            "state": "ok",
            "capture": capture.health(),
            "backfill": backfill.health(),
            **({"semantic": semantic.counters()} if semantic is not None else {}),
        }
        return tg.create_task(backfill.run(), name="timeline-backfill")

    async def _close_timeline(self) -> None:
        """After the cameras and the worker stopped: every open entry closed and written (nothing lost)."""
        if self.capture is not None:
            await self.capture.close()
        if self.timeline is not None:
            await asyncio.to_thread(self.timeline.flush)

    # ---- the backend's parts: local model (CameraMemory) or remote server (RemoteMemory + RemoteResponder) ------

    def _memory(self, camera: str, backend: Backend, start_scene: int) -> MemoryLike:
        cfg = self.cfg
        if backend.info.vision_encoder:
            from livesight.memory.camera_memory import CameraMemory  # torch: only for a local model

            return CameraMemory(camera, backend, cfg.memory, self.event_log, start_scene=start_scene)
        from livesight.memory.remote_memory import RemoteMemory

        return RemoteMemory(
            camera, cfg.model, cfg.memory, self.event_log, start_scene=start_scene, token_px=backend.info.token_px
        )

    def _remote_responder(
        self, backend: Backend, worker: ModelWorker, lanes: list[CameraLane]
    ) -> RemoteResponder | None:
        """With a remote model server (model.backend openai) response jobs and captions run here, on the loop."""
        from livesight.daemon.generation.remote_responder import RemoteResponder, remote_model_of
        from livesight.memory.remote_memory import RemoteMemory

        remote = remote_model_of(backend)
        if remote is None:
            return None
        self.service.health_parts["model"] = remote.health
        memories = {lane.camera: lane.memory for lane in lanes if isinstance(lane.memory, RemoteMemory)}
        return RemoteResponder(
            self.service,
            remote,
            memories,
            finish=worker.ending.finish,  # where every response ends (generation/response_end.py)
            start=worker.start_job,
            max_new_tokens=self.cfg.model.max_new_tokens,
            concurrent=self.cfg.model.concurrent_requests,
            watch_interval_s=self.cfg.model.watch_interval_s,
        )

    async def _contain_responder(self, responder: RemoteResponder) -> None:
        """A bug in the remote responder refuses further questions (with the reason), never ends the daemon."""
        try:
            await responder.run()
        except Exception as e:
            log.exception("the remote responder failed; questions are refused")
            self.service.responses.close(f"the remote responder failed ({type(e).__name__}: {e})"[:300])
            await self._stop.wait()

    async def _recall(self, lanes: list[CameraLane]) -> None:
        """Questions recall past timeline entries (timeline/recall.py) when there is a timeline and recall is on;
        the time-expression parser is warmed up here, in a thread (its first parse loads its tables: ~0.2 s)."""
        cfg = self.cfg.memory.recall
        if self.timeline is None or not cfg.enabled or cfg.max_scenes == 0:
            return
        self.service.recaller = Recaller(self.timeline, cfg)
        self.service.recall_rooms = {
            lane.camera: lane.memory.recall_room for lane in lanes if hasattr(lane.memory, "recall_room")
        }
        await asyncio.to_thread(parse_window, "yesterday at 3 pm", time.time(), self.service.recaller.zone)

    def _fleet_announcer(self) -> FleetAnnouncer | None:
        """In a fleet, the MQTT bridge also publishes this node's availability and its cameras' info."""
        cfg = self.cfg
        if cfg.fleet is None:
            return None
        assert self.port is not None
        url = cfg.node.url or cfg.fleet.url_of(cfg.node.id)  # what the gateway will use anyway, when configured
        url = url or default_node_url(cfg.server.host, self.port, socket.gethostname())
        return FleetAnnouncer(
            cfg.mqtt.prefix,
            node=cfg.node.id,
            url=url,
            cameras=[c.id for c in cfg.cameras],
            key=cfg.fleet.token,
            interval_s=cfg.fleet.announce_interval_s,
        )

    def _start_scene(self, camera: str) -> int:
        """The number of the scene this run starts with; it is a row from the start (its caption lands)."""
        if self.event_log is None:
            return 1
        scene = self.event_log.last_scene(camera) + 1
        self.event_log.scene(SceneChange(camera, scene, pts=0.0, wall_time=time.time(), score=0.0))
        return scene

    async def _supervise_worker(self, worker: ModelWorker) -> None:
        """The worker contains every frame's failure; should it die anyway, the daemon stays up (it still serves
        /healthz, which then says `failed` with the reason) until it is stopped."""
        try:
            await worker.run()
        except Exception:
            log.exception("the model worker died; /healthz reports status failed")
            await self._stop.wait()

    async def _contain_camera(self, camera: Camera) -> None:
        """A bug in one camera's task ends that camera (state failed, with the reason), never the daemon."""
        try:
            await camera.run()
        except Exception as e:
            log.exception("camera %s: its task failed", camera.cfg.id)  # the log's formatter scrubs secrets
            reason = scrub(f"internal error: {type(e).__name__}: {e}", camera.spec.secrets)[:300]
            self._on_camera_status(CameraStatus(camera.cfg.id, CameraState.FAILED, reason, time.time()))

    async def _contain_mqtt(self, bridge: MQTTBridge) -> None:
        """A bug in the MQTT bridge ends the bridge (health: gave up, with the reason), never the daemon."""
        try:
            await bridge.run()
        except Exception as e:
            log.exception("MQTT bridge failed; it is off")
            bridge.last_error = f"internal error: {type(e).__name__}: {e}"[:300]
            bridge.gave_up = True

    async def _watchdog(self, worker: ModelWorker) -> None:
        """Logs the worker's state changes (stalled, failed, recovered); /healthz computes the same on request."""
        last = "running"
        while True:
            await asyncio.sleep(1.0)
            h = worker.health()
            if h["state"] != last:
                level = logging.INFO if h["state"] == "running" else logging.WARNING
                log.log(level, "model worker: %s%s", h["state"], f" ({h['reason']})" if h["reason"] else "")
                last = h["state"]

    def _on_camera_status(self, status: CameraStatus) -> None:
        self.service.set_state(status)
        log.info("camera %s: %s%s", status.camera, status.state.value, f" ({status.reason})" if status.reason else "")

    def _on_state_shown(self, status: CameraStatus) -> None:
        """Every state clients see (the source's, or the worker's `error`) goes to the event log."""
        if self.event_log is not None:
            self.event_log.camera_state(status)

    def _on_scene(self, change: SceneChange) -> None:
        log.info(
            "camera %s: scene %d starts at %.2fs (score %.2f)", change.camera, change.scene, change.pts, change.score
        )
        if self.event_log is not None:
            self.event_log.scene(change)
        if self.images is not None:
            self.images.save_scene(change)

    def _on_response(self, job: ResponseJob, result: GenerationResult | None, error: str) -> None:
        if self.event_log is None or result is None:
            return
        self.event_log.response(
            response_id=job.response_id,
            camera=job.camera,
            kind=job.kind.value,
            question=job.prompt,
            answer=result.text,
            ttft_ms=round(result.ttft_ms, 2),
            scene=job.scene,
        )

    def _lane_stats(self) -> dict[str, LaneStats]:
        return self.worker.lane_stats() if self.worker is not None else {}

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.server.stats_interval_s)
            try:
                self.service.hub.publish(self.service.stats())
            except Exception as e:  # stats are informative: counted and logged once per kind, never fatal
                contain("app.stats", e, log, "the stats event")


def _open_timeline(cfg: Config, event_log: EventLog) -> TimelineStore | None:
    """The timeline store beside the event log's database (blocking: in a thread); None without a database file."""
    directory = keyframe_dir(cfg.memory.database)
    if directory is None:
        return None
    semantic = open_semantic(cfg, cfg.memory.database)  # None unless memory.timeline.embeddings names a model
    store = TimelineStore(event_log, directory, cfg.memory.timeline, semantic=semantic)
    store.open()
    return store


def _disabled() -> dict[str, str]:
    return {"state": "disabled"}


async def run_app(app: App, *, duration: float | None = None) -> None:
    """Run until stopped (or for `duration` seconds)."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(app.run(), name="app")
        if duration is not None:

            async def _timer() -> None:
                await asyncio.sleep(duration)
                app.stop()

            timer = tg.create_task(_timer(), name="duration")
            await app._stop.wait()
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
    _ = time
