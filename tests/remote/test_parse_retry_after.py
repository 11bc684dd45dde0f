"""`parse_retry_after`: a 429's Retry-After header in seconds or as an HTTP date (RFC 9110 §10.2.3), capped at
RETRY_AFTER_MAX_S; None for what is not one (the caller then backs off on its own)."""

from __future__ import annotations

import email.utils
import time

import pytest

from livesight.model.remote.client import RETRY_AFTER_MAX_S, parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # negative: now
        ("86400", RETRY_AFTER_MAX_S),  # huge: capped
        ("1e308", RETRY_AFTER_MAX_S),
        ("inf", RETRY_AFTER_MAX_S),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
    ],
)
def test_seconds_and_dates(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_a_date_in_the_future_is_the_seconds_until_it() -> None:
    future = email.utils.formatdate(time.time() + 120, usegmt=True)  # whole seconds: 119..120 from now
    got = parse_retry_after(future)
    assert got is not None and 100 < got <= 120, (future, got)
    far = email.utils.formatdate(time.time() + 10 * 86400, usegmt=True)
    assert parse_retry_after(far) == RETRY_AFTER_MAX_S


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "nan", "5 seconds", "Mon, 99 Foo 2015 99:99:99 GMT", "\x00", "1,5"]
)
def test_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None
