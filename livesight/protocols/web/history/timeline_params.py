"""The query parameters of the timeline routes, parsed (pure: strings in, a TimelineQuery or a ParamError naming the
parameter out; HTTP 400 with its text):

    q       the words to search for (at most MAX_Q_CHARS; empty or absent: list by time)
    camera  /api/scenes only: one camera id, or several separated by commas
    from    ISO-8601 with a zone, or epoch seconds (times.py)
    to      the same; `from` after `to` is refused
    limit   1..MAX_LIMIT (the default is the route's)
    cursor  the `next_cursor` of the previous page (opaque; at most MAX_CURSOR_CHARS)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from livesight.protocols.web.history.times import TimeParamError, parse_time
from livesight.types import TimelineQuery

MAX_LIMIT = 500
MAX_Q_CHARS = 500
MAX_CURSOR_CHARS = 512
MAX_CAMERAS = 64
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CURSOR = re.compile(r"^[A-Za-z0-9_.=-]+$")


class ParamError(ValueError):
    """A bad query parameter; the message names it."""


def parse_limit(value: str | None, *, default: int, maximum: int = MAX_LIMIT) -> int:
    if value is None:
        return default
    # ASCII digits only: str.isdigit() is also true of "²", which int() refuses
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        raise ParamError(f"limit must be 1..{maximum}")
    return int(value)


def parse_cameras(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    ids = tuple(dict.fromkeys(c.strip() for c in value.split(",")))
    if len(ids) > MAX_CAMERAS:
        raise ParamError(f"camera names more than {MAX_CAMERAS} cameras")
    for c in ids:
        if not CAMERA_ID.match(c):
            raise ParamError(f"camera must be camera ids separated by commas, got {c[:80]!r}")
    return ids


def parse_q(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_Q_CHARS:
        raise ParamError(f"q is longer than {MAX_Q_CHARS} characters")
    if any(ord(ch) < 32 for ch in value):
        raise ParamError("q holds control characters")
    return value.strip()


def parse_cursor(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_CURSOR_CHARS or not _CURSOR.match(value):
        raise ParamError("cursor is not valid (pass next_cursor from the previous page unchanged)")
    return value


def timeline_query(
    params: Mapping[str, str], *, camera: str | None = None, default_limit: int = 20, max_limit: int = MAX_LIMIT
) -> TimelineQuery:
    """The TimelineQuery of a request's parameters. `camera`: the camera of the path (then `camera=` is ignored).
    Raises ParamError naming the parameter."""
    try:
        start = parse_time("from", params["from"]) if params.get("from") else None
        end = parse_time("to", params["to"]) if params.get("to") else None
    except TimeParamError as e:
        raise ParamError(str(e)) from None
    if start is not None and end is not None and start > end:
        raise ParamError("from is after to")
    return TimelineQuery(
        text=parse_q(params.get("q")),
        cameras=(camera,) if camera is not None else parse_cameras(params.get("camera")),
        start=start,
        end=end,
        limit=parse_limit(params.get("limit"), default=default_limit, maximum=max_limit),
        cursor=parse_cursor(params.get("cursor")),
    )
