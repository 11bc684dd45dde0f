"""The error boundary of one camera lane in the model worker (only the event loop calls it).

A frame that raises is counted and skipped; each kind of failure is logged once per camera (with its traceback).
After `max_failures` failures in a row the lane goes to state `error` (with the reason) and is not fed until a
jittered, capped exponential backoff has passed; then it is tried again: one good frame clears the error, one more
failure doubles the wait. Other lanes never notice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from livesight.backoff import Backoff
from livesight.config import ReconnectConfig

log = logging.getLogger(__name__)

MAX_LOGGED_KINDS = 32  # distinct failure kinds logged per camera (bounded; all are counted)


class LaneGuard:
    def __init__(
        self,
        camera: str,
        *,
        max_failures: int,
        retry: ReconnectConfig,
        on_error: Callable[[str, str | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera = camera
        self.max_failures = max_failures
        self._backoff = Backoff(retry.model_copy(update={"attempts": "forever"}))
        self._on_error = on_error  # (camera, reason) on entering/renewing the error state, (camera, None) on leaving
        self._clock = clock
        self.consecutive = 0
        self.failed_total = 0
        self.error: str | None = None  # reason while in state error
        self.retry_at = 0.0
        self._logged: set[str] = set()

    def available(self) -> bool:
        """May the worker take this lane's frames now (not waiting out a backoff)?"""
        return self.error is None or self._clock() >= self.retry_at

    def failed(self, stage: str, exc: BaseException) -> None:
        self.consecutive += 1
        self.failed_total += 1
        kind = f"{stage}: {type(exc).__name__}"
        if kind not in self._logged and len(self._logged) < MAX_LOGGED_KINDS:
            self._logged.add(kind)
            log.error(
                "camera %s: frame failed in %s (%s: %s); skipped (this kind is logged once)",
                self.camera,
                stage,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        if self.consecutive < self.max_failures:
            return
        delay = self._backoff.next_delay()
        self.retry_at = self._clock() + delay
        self.error = (
            f"{self.consecutive} frames failed in a row, last in {stage}: {type(exc).__name__}: {exc}"[:300]
            + f"; retry {self._backoff.failures} in {delay:.1f}s"
        )
        log.warning("camera %s: state error (%s)", self.camera, self.error)
        self._on_error(self.camera, self.error)

    def succeeded(self) -> None:
        self.consecutive = 0
        if self.error is not None:
            log.info("camera %s: frames are processed again; error cleared", self.camera)
            self.error = None
            self._backoff.reset()
            self._on_error(self.camera, None)
