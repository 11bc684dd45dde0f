"""Secrets are redacted once, where they are parsed (livesight/redact.py), and every log line is scrubbed of them;
failures of a source are named for what they are (authentication, unreachable host, refused connection)."""

from __future__ import annotations

import io
import json
import logging
import socket

import av
import pytest

from livesight.config import parse_config
from livesight.logsetup import JsonFormatter, TextFormatter
from livesight.redact import redact_url, scrub, url_secrets
from livesight.streaming.sources import SourceSpec, describe_error, diagnose_network, open_source


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://alice:pw123@cam.lan:554/s1", "rtsp://***@cam.lan:554/s1"),
        ("rtsp://alice@cam.lan/s1", "rtsp://***@cam.lan/s1"),
        ("rtsp://a:p%40ss@[::1]:8554/x", "rtsp://***@[::1]:8554/x"),
        (
            "http://cam/video.mjpg?user=admin&password=hunter22&fps=5",
            "http://cam/video.mjpg?user=admin&password=***&fps=5",
        ),
        (
            "https://cam/s?token=abc&Auth=x&api_key=k&sig=s&ch=1",
            "https://cam/s?token=***&Auth=***&api_key=***&sig=***&ch=1",
        ),
        ("rtsp://cam.lan/s1?channel=1", "rtsp://cam.lan/s1?channel=1"),
        ("/dev/video0", "/dev/video0"),
        ("lavfi:testsrc=size=320x240", "lavfi:testsrc=size=320x240"),
        ("clips/door.mp4", "clips/door.mp4"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets_are_found_as_written_and_decoded() -> None:
    found = url_secrets("rtsp://alice:p%40ss-word@cam/s?token=t%2Bk3n&x=1")
    assert {"alice:p%40ss-word", "p%40ss-word", "p@ss-word", "t%2Bk3n", "t+k3n"} <= set(found)
    assert "1" not in found and "x" not in found
    assert url_secrets("/dev/video0") == ()


def test_scrub_removes_secrets_and_any_urls_credentials() -> None:
    text = "[Errno 1] Server returned 401: 'rtsp://alice:hunter22@cam/s' (hunter22); see http://x/?sig=abcd"
    out = scrub(text, ["hunter22"])
    assert "hunter22" not in out and "abcd" not in out
    assert "rtsp://***@cam/s" in out and "sig=***" in out
    assert scrub("a short pw: ab", ["ab"]) == "a short pw: ab"  # too short to scrub from free text


def test_every_log_line_is_scrubbed_tracebacks_included() -> None:
    secrets = ("hunter22", "tok-123456")
    for formatter in (TextFormatter(secrets), JsonFormatter(secrets)):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        log = logging.getLogger(f"test.redact.{type(formatter).__name__}")
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("opening rtsp://bob:other-pw@cam/s with token %s", "tok-123456")
            try:
                raise OSError("cannot open 'rtsp://alice:hunter22@cam/s'")
            except OSError:
                log.exception("failed")
        finally:
            log.removeHandler(handler)
        out = stream.getvalue()
        for s in (*secrets, "other-pw", "alice"):
            assert s not in out, (type(formatter).__name__, out)
        assert "OSError" in out  # the traceback is still there
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["msg"].startswith("opening rtsp://***@cam/s")


def test_config_knows_every_secret() -> None:
    cfg = parse_config(
        {
            "cameras": [
                {"id": "a", "source": "rtsp://u:cam-pass-1@cam/s"},
                {"id": "b", "source": "http://cam/x?token=cam-token-2"},
            ],
            "model": {
                "backend": "openai",
                "base_url": "https://u:url-pass-3@api.example/v1",
                "name": "m",
                "api_key": "api-key-4",
            },
            "server": {"auth_token": "bearer-5"},
            "mqtt": {"username": "u", "password": "mqtt-pass-6"},
        }
    )
    got = set(cfg.secrets())
    for s in ("cam-pass-1", "cam-token-2", "url-pass-3", "api-key-4", "bearer-5", "mqtt-pass-6"):
        assert s in got
    assert "mqtt-pass-6" not in repr(cfg) and "mqtt-pass-6" not in str(cfg.model_dump())


def test_a_401_is_authentication_failed_and_never_shows_the_password() -> None:
    spec = SourceSpec.parse("rtsp://alice:hunter22@cam.lan/s1")
    assert spec.shown == "rtsp://***@cam.lan/s1"
    # what PyAV raises when the server answers 401: FFmpeg's message carries the URL, password included
    err = av.error.HTTPUnauthorizedError(-825242872, "Server returned 401 Unauthorized", spec.url)
    assert "hunter22" in str(err)
    failure = describe_error(err, spec)
    assert failure.reason.startswith("authentication failed")
    assert not failure.permanent and failure.slow  # retried, at the backoff's cap (a rebooting camera, no lockout)
    assert "hunter22" not in failure.reason and "alice" not in failure.reason
    forbidden = describe_error(av.error.HTTPForbiddenError(-1, "Server returned 403 Forbidden", spec.url), spec)
    assert forbidden.reason.startswith("authentication failed") and "403" in forbidden.reason
    other = describe_error(RuntimeError(f"boom at {spec.url}"), spec)
    assert "hunter22" not in other.reason


def test_an_unclear_ffmpeg_error_is_diagnosed_from_the_network() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once it is closed
    spec = SourceSpec.parse(f"rtsp://u:pw-secret@127.0.0.1:{closed}/s")
    invalid = av.error.InvalidDataError(-1, "Invalid data found when processing input", spec.url)
    reason = describe_error(invalid, spec, opening=True).reason
    assert reason.startswith("connection refused") and "pw-secret" not in reason
    assert diagnose_network(SourceSpec.parse("rtsp://no-such-host.invalid/s")).startswith("host not found")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        spec = SourceSpec.parse(f"rtsp://127.0.0.1:{listener.getsockname()[1]}/s")
        assert diagnose_network(spec) is None  # the host answers: the stream is the problem
        assert describe_error(invalid, spec, opening=True).reason.startswith("not a video stream")


def test_opening_a_refused_source_says_so_without_its_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = SourceSpec.parse(f"rtsp://alice:pw-1234@127.0.0.1:{port}/s")
    with pytest.raises(Exception) as info:
        open_source(spec)
    assert info.value.reason.startswith("connection refused")  # type: ignore[attr-defined]
    assert "pw-1234" not in str(info.value)
