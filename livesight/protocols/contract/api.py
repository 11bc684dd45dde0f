"""The small interface the daemon hands to the protocol adapters (WebSocket, MQTT, HTTP).

Protocols never import the daemon: they get an object satisfying `ServiceAPI`.
Events are the value types of `livesight.types`; the adapters encode them for their wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from livesight.types import (
    CameraStatus,
    ResponseCreated,
    ResponseDelta,
    ResponseDone,
    ResponseEvent,
    SceneChange,
    TimelinePage,
    TimelineQuery,
)


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """Periodic statistics, per camera (plain JSON-able dicts) and global."""

    wall_time: float
    cameras: dict[str, dict[str, Any]]
    totals: dict[str, Any]


class ServiceError(Exception):
    """A request the service refused. `code` is the protocol error code the faces send (docs/protocol.md)."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCameraError(ServiceError, LookupError):
    code = "unknown_camera"


class InvalidRequestError(ServiceError, ValueError):
    """A field's value is refused (an empty or too long question or watch text)."""

    code = "invalid_field"


class BusyError(ServiceError, OverflowError):
    """The response queue is full: try again shortly."""

    code = "busy"


class ModelUnavailableError(ServiceError):
    """Nothing can answer now (the model worker is down: /healthz says why)."""

    code = "internal_error"


class LimitExceededError(ServiceError, OverflowError):
    """A fixed limit is reached (e.g. the number of watches)."""

    code = "limit_exceeded"


class CameraUnavailableError(ServiceError):
    """The camera exists but cannot be reached now (the gateway: its node is offline or unreachable; retry later)."""

    code = "camera_unavailable"


class RemoteError(ServiceError):
    """A request refused by a service further away (the gateway: a node's `error`), with that service's own code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RelayedEvent:
    """A server event already encoded by another service (the gateway relays its nodes' scene changes, camera states
    and merged stats): the session core passes it to its client unchanged. `raw`, when given, is its JSON text (as
    the node sent it, or encoded once for every client the gateway fans it out to): sent as it is."""

    event: dict[str, Any]
    raw: str | None = None


# What a subscription delivers: broadcast events (scene changes, camera states, stats, proactive/watch responses).
BroadcastEvent = SceneChange | CameraStatus | StatsSnapshot | ResponseEvent | RelayedEvent


@dataclass(frozen=True, slots=True)
class WatchInfo:
    """A standing watch question and its last answer."""

    watch_id: str
    camera: str
    text: str
    holds: bool | None  # the last answer at a scene change: True (yes), False (no), None (not asked yet)


class Subscription(Protocol):
    """A bounded per-subscriber event buffer. When the subscriber falls behind, it is closed (overflowed=True)."""

    overflowed: bool

    def __aiter__(self) -> AsyncIterator[BroadcastEvent]: ...

    def close(self) -> None: ...


class ServiceAPI(Protocol):
    def camera_ids(self) -> list[str]: ...

    def health(self) -> dict[str, Any]:
        """{"status": "ok"|"degraded"|"starting", "cameras": {id: {"state": …, "reason": …}}, …}"""
        ...

    def stats(self) -> StatsSnapshot: ...

    def subscribe(self, *, maxsize: int) -> Subscription: ...

    def query(self, *, camera: str | None, text: str, query_id: str | None) -> AsyncIterator[ResponseEvent]:
        """Ask a question about a camera (None = the first). Yields created, deltas, then exactly one done.

        Raises (on the first iteration) UnknownCameraError, InvalidRequestError (empty or too long text), or
        BusyError when the query queue is full. Closing the iterator early cancels the generation.
        """
        ...

    def cancel(self, response_id: str) -> bool:
        """Cancel a running or queued response; False if unknown or already done."""
        ...

    def add_watch(self, *, camera: str | None, text: str, watch_id: str) -> None:
        """Add or replace a watch. Raises UnknownCameraError, InvalidRequestError or LimitExceededError."""
        ...

    def remove_watch(self, watch_id: str) -> bool: ...

    def watch_list(self) -> list[WatchInfo]:
        """Every watch of every client, with its last answer (for Home Assistant's binary sensors)."""
        ...


# ---- pictures (latest frame with the DTD overlay, scene thumbnails) --------------------------------------------


@dataclass(frozen=True, slots=True)
class JpegImage:
    """An encoded picture. `seq` numbers the camera's sampled frames (it changes when a new frame is shown)."""

    data: bytes
    seq: int
    pts: float
    wall_time: float


class ImageSource(Protocol):
    """Camera pictures for the HTTP image endpoints and the Home Assistant image entity. Every method raises
    UnknownCameraError for an unknown camera and BusyError when too many pictures are being encoded already."""

    def latest_seq(self, camera: str) -> int | None:
        """The number of the camera's latest sampled frame (None before the first): cheap, no encoding."""
        ...

    async def latest_jpeg(self, camera: str, *, overlay: bool) -> JpegImage | None:
        """The camera's latest sampled frame as the model saw it (None before the first); with `overlay`, the
        tokens DTD dropped dimmed and the kept ones outlined."""
        ...

    async def scene_jpeg(self, camera: str, scene: int) -> bytes | None:
        """The first frame of a scene (None when not kept)."""
        ...

    async def scenes(self, camera: str, *, limit: int) -> list[dict[str, Any]]:
        """The camera's latest scenes, newest first: {scene, pts, wall_time, caption, thumbnail (bool)}."""
        ...

    def counters(self) -> dict[str, int]:
        """What it did and refused, for /metrics (e.g. encoded, refused, thumbnails_written)."""
        ...


# ---- the timeline (search over every past scene, its keyframes, summaries) -------------------------------------


class TimelineSource(Protocol):
    """The searchable scene timeline for the HTTP endpoints (/api/scenes, /api/cameras/<id>/scenes, keyframes).
    Raises UnknownCameraError for an unknown camera in `query.cameras` and InvalidRequestError for a bad query (an
    unparseable cursor, a search text with nothing to search); I/O runs off the event loop."""

    async def search(self, query: TimelineQuery) -> TimelinePage: ...

    async def keyframe(self, entry_id: str, index: int) -> bytes | None:
        """The entry's index-th keyframe (JPEG), None when the entry or its file is gone (HTTP 404)."""
        ...

    def counters(self) -> dict[str, int]:
        """For /metrics and /healthz: entries written, keyframes written/deleted, caption backlog, backfilled, …"""
        ...

    async def scene_thumbnails(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these (camera, scene) have their scene thumbnail stored (`/api/cameras/<id>/scenes/<n>.jpg`):
        a scene-list row's `thumbnail` stays the URL it had before the timeline."""
        ...


# ---- summaries of a period (GET /api/cameras/<id>/summary, "what happened in the last hour?") -------------------


@dataclass(frozen=True, slots=True)
class SummaryEnd:
    """The end of a summary: its `response.done` (text, citations) and what it was made from. `cached`: a finished
    hour answered from the cache (nothing generated)."""

    done: ResponseDone
    camera: str
    start: float
    end: float
    cached: bool
    entries: int  # timeline entries in the period


SummaryEvent = ResponseCreated | ResponseDelta | SummaryEnd


class SummarySource(Protocol):
    def summary(self, *, camera: str, start: float, end: float) -> AsyncIterator[SummaryEvent]:
        """A summary of [start, end] (epoch seconds) on `camera` from its timeline's captions: created, deltas, then
        exactly one SummaryEnd (a failed generation: its done has status failed). Raises (on the first iteration)
        UnknownCameraError, InvalidRequestError (a bad period; no timeline on this node) or BusyError. Closing the
        iterator early cancels the generation."""
        ...
