"""The time parameters of the history routes: `from`/`to` as ISO-8601 with a zone ("2026-12-07T14:00:00+01:00",
"…Z") or epoch seconds ("1765116000"). A bad value is refused naming the parameter (HTTP 400)."""

from __future__ import annotations

import math
import re
from datetime import datetime

_EPOCH = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$")
MIN_T = 0.0  # 1970
MAX_T = 253402300799.0  # 9999-12-31


class TimeParamError(ValueError):
    pass


def parse_time(name: str, value: str) -> float:
    """Epoch seconds of a `from`/`to` value. Raises TimeParamError naming `name`."""
    text = value.strip()
    if _EPOCH.match(text):
        t = float(text)
    else:
        # an unencoded '+' of a zone offset arrives as a space (form encoding): put it back
        if "T" in text and " " in text:
            text = text.replace(" ", "+")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise TimeParamError(
                f"{name} must be ISO-8601 with a zone (2026-12-07T14:00:00+01:00) or epoch seconds, got {value!r}"
            ) from None
        if dt.tzinfo is None:
            raise TimeParamError(f"{name} needs a zone (Z or +01:00), got {value!r}")
        t = dt.timestamp()
    if not math.isfinite(t) or not MIN_T <= t <= MAX_T:
        raise TimeParamError(f"{name} is out of range: {value!r}")
    return t
