"""Small value types shared by every part of the pipeline (frames, DTD steps, events).

Nothing here does I/O or imports torch; everyone may import this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

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
    """Per-camera counters, reported in `stats` and /metrics. Plain ints: only the event loop writes them."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_dropped_queue: int = 0  # sampled frames dropped because the model could not keep up (drop_oldest)
    frames_encoded: int = 0
    encoder_skipped: int = 0
    tokens_total: int = 0
    tokens_kept: int = 0
    frames_failed: int = 0  # frames whose processing raised (skipped; see docs/reliability.md)
    reconnects: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def drop_ratio(self) -> float:
        return 1.0 - self.tokens_kept / self.tokens_total if self.tokens_total else 0.0


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
class ResponseDone:
    response_id: str
    status: ResponseStatus
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    error: str | None = None


ResponseEvent = ResponseCreated | ResponseDelta | ResponseDone
