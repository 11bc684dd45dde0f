"""The small interface the daemon hands to the protocol adapters (WebSocket, MQTT, HTTP).

Protocols never import the daemon: they get an object satisfying `ServiceAPI`.
Events are the value types of `livesight.types`; the adapters encode them for their wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from livesight.types import CameraStatus, ResponseEvent, SceneChange


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


class LimitExceededError(ServiceError, OverflowError):
    """A fixed limit is reached (e.g. the number of watches)."""

    code = "limit_exceeded"


# What a subscription delivers: broadcast events (scene changes, camera states, stats, proactive/watch responses).
BroadcastEvent = SceneChange | CameraStatus | StatsSnapshot | ResponseEvent


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
