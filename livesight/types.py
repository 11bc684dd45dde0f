"""Small value types shared by every part of the pipeline (frames, DTD steps, events).

Nothing here does I/O or imports torch; everyone may import this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded video frame."""

    camera: str
    index: int  # frame number as decoded from the source (0-based, counts every decoded frame)
    pts: float  # presentation time in seconds, stream clock (monotonic within one connection)
    wall_time: float  # time.time() when the frame was decoded
    rgb: np.ndarray  # [H, W, 3] uint8, RGB


@dataclass(frozen=True, slots=True)
class DTDStep:
    """What Differential Token Dropping decided for one sampled frame."""

    camera: str
    pts: float
    wall_time: float
    grid_hw: tuple[int, int]  # (gh, gw): token grid, one token per 28x28 px
    keep: np.ndarray  # [gh*gw] bool, row-major: True where the token is kept
    change: np.ndarray  # [gh*gw] float32: change score per token (mode dependent; larger = more changed)
    encoder_skipped: bool  # the pixel pre-check found nothing changed, so the vision encoder did not run
    dtd_ms: float  # time spent deciding (not encoding)
    encode_ms: float  # vision encoder time attributed to this frame (0 when skipped)
    full: bool = False  # kept whole by rule (first frame, new resolution, keyframe): not evidence of change

    @property
    def total(self) -> int:
        return int(self.keep.size)

    @property
    def kept(self) -> int:
        return int(self.keep.sum())

    @property
    def drop_ratio(self) -> float:
        return 1.0 - self.kept / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class SceneChange:
    """A scene boundary found online by the scene detector."""

    camera: str
    scene: int  # number of the scene that starts here (continues across restarts)
    pts: float
    wall_time: float
    score: float  # detector score at the boundary (e.g. how far the changed-token ratio left its rolling mean)
    detected_wall: float | None = None  # time.time() when its evidence was confirmed (the cut tap's), if known


class TapSignal(enum.Enum):
    """What a camera does with the frame it just decoded, as its frame tap's judge says (event-triggered sampling)."""

    NONE = 0  # nothing special
    HOLD = 1  # this frame may start a new scene: keep it until the next tap frame decides
    TAKE = 2  # the held frame starts a new scene: sample it now, outside the regular ticks
    DROP = 3  # the held frame did not (a flash): forget it


class CameraState(enum.StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    ERROR = "error"  # the source is fine but the pipeline fails on its frames; retried with backoff


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A camera state change, with the reason (e.g. the error text)."""

    camera: str
    state: CameraState
    reason: str
    wall_time: float


@dataclass(slots=True)
class CameraCounters:
    """Per-camera running counters. Each field has exactly one writer:

    - the camera's decode thread: frames_decoded
    - the camera's task (event loop): frames_sampled, frames_sampled_event, frames_dropped_queue, reconnects
    - the model worker's publishing step (event loop): frames_encoded, encoder_skipped, tokens_total, tokens_kept,
      frames_failed
    Readers (stats, /metrics, the demo printer) go through `CameraSnapshot`.
    """

    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_sampled_event: int = 0  # of which taken at once because the frame tap saw a likely scene start
    frames_dropped_queue: int = 0  # sampled frames dropped because the model could not keep up (drop_oldest)
    frames_encoded: int = 0
    encoder_skipped: int = 0
    tokens_total: int = 0
    tokens_kept: int = 0
    frames_failed: int = 0  # frames whose processing raised (counted, skipped; docs/reliability.md)
    reconnects: int = 0

    @property
    def drop_ratio(self) -> float:
        return 1.0 - self.tokens_kept / self.tokens_total if self.tokens_total else 0.0


def _metric(name: str, kind: str, doc: str) -> dict[str, str]:
    return {"metric": name, "kind": kind, "help": doc}


@dataclass(frozen=True, slots=True)
class CameraSnapshot:
    """One camera at one moment, as `stats` events, /metrics and the demo printer read it.

    Field metadata names the Prometheus metric (kind counter|gauge); `as_dict()` is the wire form (the keys of
    the `stats` event, docs/protocol.md), with the memory's own statistics flattened in."""

    state: str
    frames_in: int = field(metadata=_metric("livesight_frames_decoded", "counter", "frames decoded from the source"))
    frames_sampled: int = field(metadata=_metric("livesight_frames_sampled", "counter", "frames taken by the sampler"))
    frames_sampled_event: int = field(
        metadata=_metric(
            "livesight_frames_sampled_event",
            "counter",
            "of the sampled frames, those taken at once (outside the regular ticks) because the frame tap saw a "
            "likely scene start",
        )
    )
    frames_dropped: int = field(
        metadata=_metric(
            "livesight_frames_dropped",
            "counter",
            "sampled frames dropped because the model could not keep up (queue policy drop_oldest)",
        )
    )
    frames_encoded: int = field(
        metadata=_metric("livesight_frames_encoded", "counter", "frames run through the vision encoder")
    )
    encoder_skipped: int = field(
        metadata=_metric("livesight_encoder_skipped", "counter", "frames whose encoding the pixel pre-check skipped")
    )
    frames_failed: int = field(
        metadata=_metric("livesight_frames_failed", "counter", "frames whose processing failed (skipped, counted)")
    )
    tokens_total: int = field(metadata=_metric("livesight_tokens", "counter", "visual tokens produced"))
    tokens_kept: int = field(metadata=_metric("livesight_tokens_kept", "counter", "visual tokens kept by DTD"))
    drop_ratio: float = field(
        metadata=_metric("livesight_token_drop_ratio", "gauge", "fraction of visual tokens dropped by DTD")
    )
    reconnects: int = field(metadata=_metric("livesight_reconnects", "counter", "source reconnects"))
    frame_ms_median: float | None = field(
        default=None, metadata=_metric("livesight_camera_frame_ms_median", "gauge", "median pipeline ms per frame")
    )
    memory: dict[str, int | float | bool] = field(default_factory=dict)  # CameraMemory.stats(), owned by memory

    @classmethod
    def of(
        cls, state: str, k: CameraCounters, *, frame_ms_median: float | None = None, memory: dict | None = None
    ) -> CameraSnapshot:
        return cls(
            state=state,
            frames_in=k.frames_decoded,
            frames_sampled=k.frames_sampled,
            frames_sampled_event=k.frames_sampled_event,
            frames_dropped=k.frames_dropped_queue,
            frames_encoded=k.frames_encoded,
            encoder_skipped=k.encoder_skipped,
            frames_failed=k.frames_failed,
            tokens_total=k.tokens_total,
            tokens_kept=k.tokens_kept,
            drop_ratio=round(k.drop_ratio, 4),
            reconnects=k.reconnects,
            frame_ms_median=frame_ms_median,
            memory=dict(memory or {}),
        )

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "memory"}
        return {**out, **self.memory}


# ---- responses (answers to queries, proactive messages, watch hits) ---------------------------------------


class ResponseKind(enum.StrEnum):
    QUERY = "query"  # a client asked
    PROACTIVE = "proactive"  # the daemon speaks up at a scene change
    WATCH = "watch"  # a standing watch question answered "yes"


class ResponseStatus(enum.StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str
    camera: str
    kind: ResponseKind
    query_id: str | None = None  # the client's query id, for kind=query
    watch_id: str | None = None  # for kind=watch
    scene: int | None = None  # scene the response is about (proactive/watch)
    pts: float | None = None


@dataclass(frozen=True, slots=True)
class ResponseDelta:
    response_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A past moment an answer drew on (a timeline entry recalled into it): `response.done` carries them."""

    camera: str
    scene: int
    id: str  # the timeline entry's id (a ULID with prefix "tl_")
    pts: float
    wall_time: float
    thumbnail: str | None = None  # URL path of its keyframe (e.g. /api/timeline/<id>/keyframes/0.jpg), if kept

    @classmethod
    def of(cls, entry: TimelineEntry) -> Citation:
        """The citation of a timeline entry (its first keyframe as the thumbnail, when it kept one)."""
        thumbnail = keyframe_url(entry.id, 0) if entry.keyframes else None
        return cls(entry.camera, entry.scene, entry.id, entry.pts, entry.wall_time, thumbnail)

    def as_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera,
            "scene": self.scene,
            "id": self.id,
            "pts": self.pts,
            "wall_time": self.wall_time,
            "thumbnail": self.thumbnail,
        }


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: ResponseStatus
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    error: str | None = None
    code: str | None = None  # a failure's protocol error code, when it has one (e.g. model_unavailable)
    citations: tuple[Citation, ...] = ()  # timeline entries recalled into the answer (empty: nothing recalled)


ResponseEvent = ResponseCreated | ResponseDelta | ResponseDone


# ---- the timeline (livesight/timeline/: every scene, or chunk of a long one, as a searchable entry) -----------------


@dataclass(frozen=True, slots=True)
class Keyframe:
    """One stored picture of a timeline entry. `role`: "first" (the scene's first frame with content), "action" (the
    frame where DTD kept the most tokens), "last"."""

    role: str
    pts: float
    wall_time: float


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """A scene, or a chunk of at most `memory.timeline.chunk_s` of a long one. `end_*` are None while it is open."""

    id: str  # ULID with prefix "tl_" (livesight.ids.new_id("tl"))
    camera: str
    scene: int
    chunk: int  # 0 for the scene's first entry, 1, 2, … for the chunks of a long scene
    pts: float
    wall_time: float
    end_pts: float | None
    end_wall_time: float | None
    caption: str | None
    keyframes: tuple[Keyframe, ...] = ()  # in stored order; index i is served at keyframe_url(id, i)
    watches: tuple[str, ...] = ()  # texts of the watches that fired during it
    answers: tuple[str, ...] = ()  # answers given during it (questions, proactive messages)
    caption_state: str = "pending"  # "pending" (to be captioned, or backfilled) | "done" | "failed" (gave up)


def keyframe_url(entry_id: str, index: int) -> str:
    """The URL path a node (and the gateway) serves an entry's keyframe at."""
    return f"/api/timeline/{entry_id}/keyframes/{index}.jpg"


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """A search over the timeline. `text` None lists by time (newest first); with text, best match first (BM25,
    fused with semantic ranks when embeddings are on). `start`/`end` are epoch seconds (an entry matches when it
    overlaps [start, end])."""

    text: str | None = None
    cameras: tuple[str, ...] | None = None  # None: every camera
    start: float | None = None
    end: float | None = None
    limit: int = 20
    cursor: str | None = None  # opaque, from TimelinePage.next_cursor


@dataclass(frozen=True, slots=True)
class TimelineHit:
    entry: TimelineEntry
    rank: float | None = None  # with text: higher is better (e.g. -bm25 or fused score); None when listing by time


@dataclass(frozen=True, slots=True)
class TimelinePage:
    hits: tuple[TimelineHit, ...]
    next_cursor: str | None = None
