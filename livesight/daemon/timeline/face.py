"""The timeline for the faces: `TimelineSource` (protocols/contract/api.py) over the TimelineStore, every store call
in a thread (never on the event loop), at most MAX_WAITING of them at once (beyond: BusyError, HTTP 503).

    face = TimelineFace(store, camera_ids, thumbnails)   # store: the app's TimelineStore (opened in a thread)
    WebServer(..., timeline=face)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from livesight.daemon.images import ThumbnailStore
from livesight.protocols.contract.api import BusyError, InvalidRequestError, UnknownCameraError
from livesight.timeline.store import TimelineStore
from livesight.types import TimelinePage, TimelineQuery

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_WAITING = 16


class TimelineFace:
    def __init__(self, store: TimelineStore, cameras: Sequence[str], thumbnails: ThumbnailStore | None) -> None:
        self.store = store
        self._cameras = frozenset(cameras)
        self._thumbnails = thumbnails
        self._waiting = 0
        self.refused = 0

    async def search(self, query: TimelineQuery) -> TimelinePage:
        for cam in query.cameras or ():
            if cam not in self._cameras:
                raise UnknownCameraError(f"unknown camera {cam!r}")
        try:
            return await self._run(self.store.search, query)
        except ValueError as e:
            raise InvalidRequestError(str(e)) from None

    async def keyframe(self, entry_id: str, index: int) -> bytes | None:
        return await self._run(self.store.keyframe_bytes, entry_id, index)

    async def scene_thumbnails(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (camera, scene) have today's scene thumbnail file (`/api/cameras/<id>/scenes/<n>.jpg`)."""
        thumbs = self._thumbnails
        if thumbs is None or not keys:
            return set()
        return await self._run(lambda: {k for k in keys if thumbs.exists(*k)})

    def counters(self) -> dict[str, int]:
        return {**self.store.counters(), "requests_refused": self.refused}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._waiting >= MAX_WAITING:
            self.refused += 1
            raise BusyError(f"{self._waiting} timeline requests are waiting; try again shortly")
        self._waiting += 1
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._waiting -= 1
