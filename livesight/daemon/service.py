"""`Service`: the daemon's implementation of `ServiceAPI`, handed to the protocol adapters.

It owns the event hub, the response queue and the watch list, and reads camera state and counters;
the model worker (model_worker.py) consumes the response queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from livesight.daemon.frame_slots import FrameSlots
from livesight.daemon.generation.queue import GenerationBudget, GenerationQueue
from livesight.daemon.generation.responses import ResponseJob
from livesight.daemon.generation.summary_jobs import summary_events
from livesight.daemon.hub import EventHub, HubSubscription
from livesight.errors import contain, contained_counts
from livesight.model.backend import RecallRoom
from livesight.protocols.contract.api import (
    InvalidRequestError,
    LimitExceededError,
    StatsSnapshot,
    SummaryEnd,
    SummaryEvent,
    UnknownCameraError,
    WatchInfo,
)
from livesight.timeline.recall import Recall, Recaller
from livesight.timeline.summary import Summaries
from livesight.types import (
    CameraCounters,
    CameraSnapshot,
    CameraState,
    CameraStatus,
    ResponseEvent,
    ResponseKind,
)

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
MAX_WATCHES = 64  # default of server.max_watches
HEALTHY_PART_STATES = {"ok", "running", "connected", "disabled", "starting"}


@dataclass(frozen=True, slots=True)
class LaneStats:
    """What the model worker knows of a camera beyond the counters."""

    frame_ms_median: float | None
    memory: Mapping[str, Any]  # a read-only snapshot the model worker published (model_worker.py)


@dataclass(frozen=True, slots=True)
class Watch:
    watch_id: str
    camera: str
    text: str


class Service:
    def __init__(
        self,
        camera_ids: list[str],
        *,
        response_queue_size: int = 32,
        generation_share: float = 0.3,
        model_units: int = 1,
        proactive_stale_s: float = 3.0,
        stats_source: Callable[[], dict[str, LaneStats]] | None = None,
        model_info: dict[str, Any] | None = None,
        max_watches: int = MAX_WATCHES,
    ) -> None:
        # no cameras is allowed: a fleet node that owns none idles (docs/fleet.md)
        self._cameras = list(camera_ids)
        self.hub = EventHub()
        # every generation job (questions, proactive messages, watch checks, captions), prioritised and bounded
        self.responses = GenerationQueue(
            response_queue_size,
            budget=GenerationBudget(generation_share, units=model_units),
            stale_after_s=proactive_stale_s,
        )
        self.counters: dict[str, CameraCounters] = {c: CameraCounters() for c in camera_ids}
        self.states: dict[str, CameraStatus] = {
            c: CameraStatus(c, CameraState.CONNECTING, "starting", time.time()) for c in camera_ids
        }  # what clients see: the source's state, or `error` while the pipeline fails on its frames
        self._source_states: dict[str, CameraStatus] = dict(self.states)
        self._lane_errors: dict[str, str] = {}
        self.on_state_shown: Callable[[CameraStatus], None] | None = None  # e.g. the event log
        # other parts' health ({"state": ok|degraded|failed|…, …}), registered by the app: worker, event_log, mqtt
        self.health_parts: dict[str, Callable[[], dict[str, Any]]] = {}
        self.watches: dict[str, Watch] = {}
        self.max_watches = max_watches  # every client's together (each client's share: server.watches_per_client)
        self._stats_source = stats_source
        self.model_info = model_info or {}
        self.started = time.time()
        self.ready = False  # set by the app once the model is loaded and cameras started
        self.ttft_ms: list[float] = []  # recent TTFTs (bounded), for stats
        self.frames = FrameSlots()  # what the model saw last, per camera (written by the model worker)
        self.watch_holds: dict[str, bool] = {}  # watch id → its last answer (yes = True)
        self.summaries: Summaries | None = None  # with a timeline (set by the app): summaries of past periods
        # recall of past timeline entries into questions (set by the app when there is a timeline): the recaller,
        # and per camera what its memory leaves a recall (where the live window starts, the prompt room)
        self.recaller: Recaller | None = None
        self.recall_rooms: dict[str, Callable[[], RecallRoom]] = {}

    # ---- ServiceAPI ----------------------------------------------------------------------------------------

    def camera_ids(self) -> list[str]:
        return list(self._cameras)

    def health(self) -> dict[str, Any]:
        """status: `failed` when a part the whole daemon needs is down (HTTP 503), `degraded` when a camera or
        part is unwell but the daemon serves, else `ok` (`starting` until ready)."""
        cams = {c: {"state": s.state.value, "reason": s.reason, "since": s.wall_time} for c, s in self.states.items()}
        bad = {CameraState.FAILED, CameraState.STALLED, CameraState.RECONNECTING, CameraState.ERROR}
        parts: dict[str, dict[str, Any]] = {}
        for name, fn in self.health_parts.items():
            try:
                parts[name] = fn()
            except Exception as e:  # a broken part must not break /healthz
                contain("health.part", e, log, f"the health check of {name}")
                parts[name] = {"state": "failed", "reason": f"health check raised {type(e).__name__}: {e}"}
        part_states = {p.get("state") for p in parts.values()}
        if "failed" in part_states:
            status = "failed"
        elif not self.ready:
            status = "starting"
        elif any(s.state in bad for s in self.states.values()) or part_states - HEALTHY_PART_STATES:
            status = "degraded"
        else:
            status = "ok"
        model_part = parts.pop("model", {})  # a remote model server's part (state, last error, counters)
        return {
            "status": status,
            "uptime_s": round(time.time() - self.started, 1),
            "cameras": cams,
            **parts,
            "model": {**self.model_info, **model_part},
            "clients": self.hub.subscriber_count,
            "queued_responses": len(self.responses),
            "contained_errors": contained_counts(),  # errors survived, by kind (errors.py); logged once per kind
        }

    def snapshots(self) -> dict[str, CameraSnapshot]:
        """Every camera's typed snapshot (what stats, /metrics and the demo printer show)."""
        lanes = self._stats_source() if self._stats_source else {}
        out = {}
        for c, k in self.counters.items():
            lane = lanes.get(c)
            out[c] = CameraSnapshot.of(
                self.states[c].state.value,
                k,
                frame_ms_median=lane.frame_ms_median if lane else None,
                memory=lane.memory if lane else None,
            )
        return out

    def stats(self) -> StatsSnapshot:
        cameras = {c: snap.as_dict() for c, snap in self.snapshots().items()}
        recent = self.ttft_ms[-50:]
        totals = {
            "tokens_total": sum(k.tokens_total for k in self.counters.values()),
            "tokens_kept": sum(k.tokens_kept for k in self.counters.values()),
            "clients": self.hub.subscriber_count,
            "clients_dropped": self.hub.subscribers_dropped,
            "responses_refused": self.responses.refused,
            **{f"generation_{k}": v for k, v in vars(self.responses.counters).items()},
            "ttft_ms_median": sorted(recent)[len(recent) // 2] if recent else None,
        }
        tt = totals["tokens_total"]
        totals["drop_ratio"] = round(1 - totals["tokens_kept"] / tt, 4) if tt else 0.0
        return StatsSnapshot(wall_time=time.time(), cameras=cameras, totals=totals)

    def subscribe(self, *, maxsize: int) -> HubSubscription:
        return self.hub.subscribe(maxsize=maxsize)

    def _camera(self, camera: str | None) -> str:
        if camera is None:
            if not self._cameras:
                raise UnknownCameraError("this node runs no cameras")
            return self._cameras[0]
        if camera not in self.counters:
            raise UnknownCameraError(f"unknown camera {camera!r} (cameras: {', '.join(self._cameras)})")
        return camera

    async def query(self, *, camera: str | None, text: str, query_id: str | None) -> AsyncIterator[ResponseEvent]:
        cam = self._camera(camera)
        text = text.strip()
        if not text:
            raise InvalidRequestError("empty question")
        if len(text) > MAX_QUESTION_CHARS:
            raise InvalidRequestError(f"question longer than {MAX_QUESTION_CHARS} characters")
        summaries = self.summaries
        window = await summaries.window_of(text) if summaries is not None else None
        if summaries is not None and window is not None:  # "what happened in the last hour?": a summary of it
            async for sev in summary_events(summaries, self.responses, cam, *window, query_id=query_id):
                yield sev.done if isinstance(sev, SummaryEnd) else sev
            return
        events: asyncio.Queue[ResponseEvent] = asyncio.Queue()  # bounded by construction (events_of)
        recall = await self._recall(cam, text)
        job = ResponseJob(
            camera=cam, kind=ResponseKind.QUERY, prompt=text, sink=events.put_nowait, query_id=query_id, recall=recall
        )
        self.responses.put(job)  # BusyError when full
        events.put_nowait(job.created_event())
        async with contextlib.aclosing(self.responses.events_of(job, events)) as stream:
            async for ev in stream:
                yield ev

    async def _recall(self, camera: str, text: str) -> Recall | None:
        """The past entries to recall into a question (timeline/recall.py), fitted to the prompt room its camera's
        memory leaves; in a thread (dateparser, SQLite, JPEG files). A failure recalls nothing, never fails the
        question."""
        recaller = self.recaller
        if recaller is None:
            return None
        room_of = self.recall_rooms.get(camera)

        def work() -> Recall:
            room = room_of() if room_of is not None else RecallRoom(None, 1 << 30, 0)
            found = recaller.recall(text, camera=camera, now=time.time(), live_start=room.live_start)
            return found.fit(room.budget_tokens, lambda _img: room.image_tokens)

        try:
            return await asyncio.to_thread(work)
        except Exception as e:  # the timeline is an extra: the question is answered from the live window alone
            contain("service.recall", e, log, f"recall for a question on {camera}")
            return None

    def cancel(self, response_id: str) -> bool:
        return self.responses.cancel(response_id)

    async def summary(self, *, camera: str, start: float, end: float) -> AsyncIterator[SummaryEvent]:
        """SummarySource (GET /api/cameras/<id>/summary): a summary of [start, end] from the timeline's captions."""
        cam = self._camera(camera)
        if self.summaries is None:
            raise InvalidRequestError("this node keeps no timeline (memory.database, memory.timeline.enabled)")
        if not end > start:
            raise InvalidRequestError(f"'to' must be after 'from' (from {start}, to {end})")
        async for ev in summary_events(self.summaries, self.responses, cam, start, end):
            yield ev

    def add_watch(self, *, camera: str | None, text: str, watch_id: str) -> None:
        cam = self._camera(camera)
        text = text.strip()
        if not text or len(text) > MAX_QUESTION_CHARS:
            raise InvalidRequestError(f"watch text must be 1..{MAX_QUESTION_CHARS} characters")
        if watch_id not in self.watches and len(self.watches) >= self.max_watches:
            raise LimitExceededError(f"at most {self.max_watches} watches (server.max_watches)")
        self.watches[watch_id] = Watch(watch_id, cam, text)

    def remove_watch(self, watch_id: str) -> bool:
        self.watch_holds.pop(watch_id, None)
        return self.watches.pop(watch_id, None) is not None

    def watch_list(self) -> list[WatchInfo]:
        return [
            WatchInfo(w.watch_id, w.camera, w.text, self.watch_holds.get(w.watch_id)) for w in self.watches.values()
        ]

    def watch_answered(self, watch_id: str | None, holds: bool) -> None:
        """The model worker answered a watch question (yes/no) at a scene change."""
        if watch_id is not None and watch_id in self.watches:
            self.watch_holds[watch_id] = holds

    # ---- used by the daemon ------------------------------------------------------------------------------

    def set_state(self, status: CameraStatus) -> None:
        """The source's state (from the camera)."""
        self._source_states[status.camera] = status
        self._show(status.camera)

    def set_lane_error(self, camera: str, reason: str | None) -> None:
        """The model worker's verdict on the camera's frames: a reason = state error, None = cleared."""
        if reason is None:
            self._lane_errors.pop(camera, None)
        else:
            self._lane_errors[camera] = reason
        self._show(camera)

    def _show(self, camera: str) -> None:
        reason = self._lane_errors.get(camera)
        src = self._source_states[camera]
        status = src if reason is None else CameraStatus(camera, CameraState.ERROR, reason, time.time())
        prev = self.states.get(camera)
        self.states[camera] = status
        if prev is None or prev.state != status.state or prev.reason != status.reason:
            self.hub.publish(status)
            if self.on_state_shown is not None:
                self.on_state_shown(status)

    def record_ttft(self, ms: float) -> None:
        self.ttft_ms.append(ms)
        if len(self.ttft_ms) > 1000:
            del self.ttft_ms[:500]

    def watches_for(self, camera: str) -> list[Watch]:
        return [w for w in self.watches.values() if w.camera == camera]
