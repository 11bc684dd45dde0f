"""Jittered, capped exponential backoff (ReconnectConfig): the one backoff of cameras, the MQTT bridge and the gateway.

`reconnect.attempts` = N means N reconnect attempts after the first failed connection (0: never retry), counted
since the last successful connection; then the caller gives up (a camera fails, the MQTT bridge turns off).

    backoff = Backoff(cfg.reconnect)
    while True:
        connected = await connect_and_run()
        if connected:
            backoff.reset()            # it had connected: a lost connection starts the backoff over
        if backoff.exhausted:
            give up
        await asyncio.sleep(backoff.next_delay())
"""

from __future__ import annotations

import random

from livesight.config import ReconnectConfig


def backoff_delay(cfg: ReconnectConfig, attempt: int, rng: random.Random) -> float:
    """Delay before reconnect attempt `attempt` (0-based): initial·multiplier^attempt ± jitter, never above max_s."""
    base = min(cfg.max_s, cfg.initial_s * cfg.multiplier ** min(attempt, 64))
    jitter = base * cfg.jitter * (2 * rng.random() - 1)
    return max(0.0, min(cfg.max_s, base + jitter))


class Backoff:
    def __init__(self, cfg: ReconnectConfig, *, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.failures = 0  # reconnect attempts since the last reset
        self._rng = rng or random.Random()

    @property
    def exhausted(self) -> bool:
        return self.cfg.attempts != "forever" and self.failures >= int(self.cfg.attempts)

    def next_delay(self) -> float:
        """Counts a reconnect attempt and returns how long to wait before it."""
        delay = backoff_delay(self.cfg, self.failures, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
