"""Jittered, capped exponential backoff (ReconnectConfig)."""

from __future__ import annotations

import random

from livesight.config import ReconnectConfig


class Backoff:
    def __init__(self, cfg: ReconnectConfig, *, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.failures = 0
        self._rng = rng or random.Random()

    @property
    def exhausted(self) -> bool:
        return self.cfg.attempts != "forever" and self.failures >= int(self.cfg.attempts)

    def next_delay(self) -> float:
        """Counts a failure and returns how long to wait before the next attempt."""
        base = min(self.cfg.max_s, self.cfg.initial_s * self.cfg.multiplier**self.failures)
        self.failures += 1
        jitter = base * self.cfg.jitter * (2 * self._rng.random() - 1)
        return max(0.0, min(self.cfg.max_s, base + jitter))

    def reset(self) -> None:
        self.failures = 0
