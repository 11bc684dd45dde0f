"""Broadcast of pipeline events to subscribers, each with its own bounded buffer.

Overflow policy `disconnect_client`: a subscriber whose buffer is full is closed (overflowed=True) and counted;
the publisher never waits. Publishing is synchronous and must be called on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from livesight.protocols.contract.api import BroadcastEvent

log = logging.getLogger(__name__)

_CLOSED = object()


class HubSubscription:
    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize + 1)  # +1: room for the close marker
        self._maxsize = maxsize
        self.overflowed = False
        self.closed = False

    def _offer(self, event: BroadcastEvent) -> bool:
        """Queue an event; False (and close) when the subscriber is too far behind."""
        if self.closed:
            return False
        if self._queue.qsize() >= self._maxsize:
            self.overflowed = True
            self.close()
            return False
        self._queue.put_nowait(event)
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._hub._remove(self)
        self._queue.put_nowait(_CLOSED)

    async def __aiter__(self) -> AsyncIterator[BroadcastEvent]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]


class EventHub:
    def __init__(self) -> None:
        self._subs: set[HubSubscription] = set()
        self.published = 0
        self.subscribers_dropped = 0  # subscribers closed because their buffer overflowed

    def subscribe(self, *, maxsize: int) -> HubSubscription:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        sub = HubSubscription(self, maxsize)
        self._subs.add(sub)
        return sub

    def _remove(self, sub: HubSubscription) -> None:
        self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, event: BroadcastEvent) -> None:
        self.published += 1
        for sub in list(self._subs):
            if not sub._offer(event):
                self.subscribers_dropped += 1
                log.warning("event subscriber fell behind (%d buffered): dropped it", sub._maxsize)

    def close_all(self) -> None:
        for sub in list(self._subs):
            sub.close()
