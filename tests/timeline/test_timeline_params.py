"""The timeline routes' parameters, parsed from literal strings (pure): every bad value is refused naming it."""

from __future__ import annotations

import pytest

from livesight.protocols.web.history.timeline_params import ParamError, parse_cameras, parse_limit, timeline_query
from livesight.types import TimelineQuery


def test_a_full_query() -> None:
    q = timeline_query(
        {
            "q": " red van ",
            "camera": "door,yard,door",
            "from": "2026-12-07T08:00:00+01:00",
            "to": "1796630400",
            "limit": "50",
            "cursor": "eyJoIjogM30.abc123",
        }
    )
    assert q == TimelineQuery("red van", ("door", "yard"), 1796626800.0, 1796630400.0, 50, "eyJoIjogM30.abc123")


def test_defaults_and_the_path_camera() -> None:
    assert timeline_query({}) == TimelineQuery(None, None, None, None, 20, None)
    q = timeline_query({"camera": "other", "q": "  "}, camera="door", default_limit=100)
    assert q == TimelineQuery(None, ("door",), None, None, 100, None)
    assert timeline_query({"from": "2026-12-07T07:00:00Z", "to": "", "cursor": ""}).start == 1796626800.0
    assert timeline_query({"from": "1796626800.5"}).start == 1796626800.5
    # a '+' of a zone sent unencoded in a query string arrives as a space
    assert timeline_query({"from": "2026-12-07T08:00:00 01:00"}).start == 1796626800.0


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"from": "2026-12-07T08:00:00"}, "from needs a zone"),
        ({"to": "yesterday"}, "to must be ISO-8601 with a zone"),
        ({"from": "1e20"}, "from must be ISO-8601"),
        ({"to": "99999999999999"}, "to must be ISO-8601"),
        ({"from": "1796630400", "to": "1796626800"}, "from is after to"),
        ({"limit": "0"}, "limit must be 1..500"),
        ({"limit": "501"}, "limit must be 1..500"),
        ({"limit": "²"}, "limit must be 1..500"),
        ({"limit": "-1"}, "limit must be 1..500"),
        ({"camera": "../etc"}, "camera must be camera ids"),
        ({"camera": "a,,b"}, "camera must be camera ids"),
        ({"q": "x" * 501}, "q is longer than 500"),
        ({"q": "van\x00"}, "q holds control characters"),
        ({"cursor": "a b"}, "cursor is not valid"),
        ({"cursor": "a" * 513}, "cursor is not valid"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict[str, str], reason: str) -> None:
    with pytest.raises(ParamError, match=reason):
        timeline_query(params)


def test_parts() -> None:
    assert parse_limit(None, default=7) == 7 and parse_limit("200", default=1, maximum=200) == 200
    with pytest.raises(ParamError):
        parse_limit("201", default=1, maximum=200)
    assert parse_cameras(None) is None and parse_cameras("a, b") == ("a", "b")
    with pytest.raises(ParamError, match="more than 64"):
        parse_cameras(",".join(f"c{i}" for i in range(65)))
