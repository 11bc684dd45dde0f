"""A bounded asyncio queue whose overflow policy is `drop_oldest`: the producer never waits, the dropped are counted."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    policy = "drop_oldest"

    def __init__(self, maxsize: int, *, on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._event = asyncio.Event()
        self._on_drop = on_drop
        self.dropped = 0
        self.put_count = 0
        self.on_put: Callable[[], None] | None = None  # called after each put (a consumer's wake-up)

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        """Must be called on the event loop (use loop.call_soon_threadsafe from threads)."""
        if len(self._items) >= self.maxsize:
            old = self._items.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(old)
        self._items.append(item)
        self.put_count += 1
        self._event.set()
        if self.on_put is not None:
            self.on_put()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._event.clear()
        return item

    async def get(self) -> T:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        return self.get_nowait()
