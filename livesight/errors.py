"""Errors a user can act on (the CLI prints them as one line and exits non-zero, without a traceback), and errors
that are contained, never swallowed: each broad `except` that survives an error records it with `contain()`.

    except Exception as e:  # a bug must not stop the camera
        contain("camera.close", e, log, f"camera {cam}: closing its source")

Each kind of contained error is counted (`contained_counts()`: /metrics `livesight_contained_errors_total{kind}`,
/healthz `contained_errors`) and logged with its traceback the first time, then again at the 10th, 100th, 1000th …
(a flood is not a log flood, and a kind that keeps failing says so). Thread-safe: the decode threads and the model
worker's thread record here too. Process-wide, like the log: one daemon (or gateway) per process.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter


class LivesightError(Exception):
    """Base class of user-facing errors: the message names the problem and, where there is one, the field."""

    exit_code = 2


class ConfigError(LivesightError):
    """The configuration is invalid; the message lists every problem with its field path."""


class SourceError(LivesightError):
    """A video source cannot be opened or decoded."""


class ModelLoadError(LivesightError):
    """Model weights or tokenizer cannot be loaded."""


class ServeError(LivesightError):
    """The server cannot start (e.g. the port is in use)."""


# ---- contained errors ------------------------------------------------------------------------------------------

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def contain(kind: str, error: BaseException, logger: logging.Logger, what: str = "") -> int:
    """Count one contained error of `kind` and log it when the count is 1, 10, 100, …; returns the count."""
    with _lock:
        _counts[kind] += 1
        n = _counts[kind]
    if _is_power_of_10(n):
        logger.warning(
            '%s%s: %s: %s (contained; counted in livesight_contained_errors_total{kind="%s"})',
            what or kind,
            "" if n == 1 else f" ({n} times so far)",
            type(error).__name__,
            error,
            kind,
            exc_info=error if n == 1 else None,  # the traceback once per kind
        )
    return n


def _is_power_of_10(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def contained_counts() -> dict[str, int]:
    """Contained errors by kind, so far (only kinds that happened)."""
    with _lock:
        return dict(_counts)
