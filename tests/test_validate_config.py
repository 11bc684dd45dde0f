"""`livesight validate-config` refuses every config `serve` cannot run, naming the field: the schema's checks (what no
machine could run) and, unless --schema-only, this machine's (files, the event log's directory, TLS files, weights).
One table; each row a config change and the line the user must see."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from livesight.cli import main
from livesight.errors import ConfigError

BASE: dict[str, Any] = {
    "cameras": [{"id": "cam", "source": "builtin:demo"}],
    "model": {"backend": "echo"},
    "memory": {"database": None},
}


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    node: Any = cfg
    for p in path:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    node[last] = value


# (what is set, the error line the user sees); TMP in a value is the test's own directory
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"cameras.0.source": "builtin:nope"}, "cameras.0.source: unknown builtin source 'builtin:nope'"),
    ({"cameras.0.source": "foo://cam/stream"}, "cameras.0.source: unknown URL scheme in 'foo://cam/stream'"),
    ({"cameras.0.source": "rtsp://"}, "cameras.0.source: no host in 'rtsp://'"),
    ({"cameras.0.source": "rtsp://cam:99999/s"}, "cameras.0.source: not a valid URL: 'rtsp://cam:99999/s'"),
    ({"cameras.0.source": "lavfi:"}, "cameras.0.source: lavfi: needs a filter graph"),
    ({"cameras.0.source": "/dev/video0", "cameras.0.width": 640}, "cameras.0: width and height go together"),
    ({"cameras.0.source": "rtsp://cam/s", "cameras.0.width": 640, "cameras.0.height": 480},
     "cameras.0: width/height: only for webcams"),
    ({"model": {"path": "/models/qwen", "seed": 3}}, "model: seed: only the tiny-random preset uses it"),
    ({"model": {"backend": "echo", "seed": 3}}, "model: seed: only the tiny-random preset uses it"),
    ({"server.allowed_origins": ["home.example"]}, "server.allowed_origins: 'home.example' is not an origin"),
    ({"server.allowed_origins": ["https://a.example/path"]}, "server.allowed_origins: 'https://a.example/path'"),
    ({"server.allowed_origins": ["https://home.example", "*"]},
     "server.allowed_origins: '*' needs server.auth_token (without a token any web page a browser visits could open "
     "the WebSocket, ask questions and read the cameras: cross-site WebSocket hijacking)"),
    ({"server.watches_per_client": 100}, "server: watches_per_client (100) is larger than max_watches (64)"),
    ({"mqtt.password": "pw-123"}, "mqtt: password is set without username"),
    ({"mqtt.tls": {"cert_file": "/c.pem"}}, "mqtt.tls: cert_file and key_file go together"),
    # this machine
    ({"cameras.0.source": "TMP/missing.mp4"}, "cameras.0.source: file not found: TMP/missing.mp4"),
    ({"memory.database": "TMP"}, "memory.database: TMP is a directory"),
    ({"memory.database": "TMP/file.txt/x.sqlite"}, "memory.database: TMP/file.txt is not a directory"),
    ({"mqtt.enabled": True, "mqtt.tls": {"ca_file": "TMP/no-ca.pem"}}, "mqtt.tls.ca_file: cannot load TMP/no-ca.pem"),
    ({"model": {"path": "TMP/no-model"}}, "model.path: 'TMP/no-model': no such directory"),
    ({"model": {"path": "TMP"}}, "model.path: 'TMP': no config.json in it (not a checkpoint)"),
    ({"model": {"path": "nobody-here/no-such-model-0"}}, "model.path: 'nobody-here/no-such-model-0' is not in the"),
]  # fmt: skip
ACCEPTED: list[dict[str, Any]] = [
    {},
    {"cameras.0.source": "/dev/video7", "cameras.0.width": 640, "cameras.0.height": 480},  # a webcam may come later
    {"cameras.0.source": "rtsp://alice:pw@cam.lan:8554/s?token=x"},
    {"cameras.0.source": "udp://:1234"},
    {"cameras.0.source": "lavfi:testsrc2=size=320x240"},
    {"model": {"preset": "tiny-random", "seed": 7}},
    {"server.allowed_origins": ["https://home.example:8123", "http://localhost:3000/"]},
    {"server.allowed_origins": ["*"], "server.auth_token": "a-token-0123456789"},  # "*": with a token only
    {"memory.database": "TMP/new/dirs/events.sqlite"},
    {"mqtt.username": "node", "mqtt.password": "pw-123"},
]


def _write(tmp_path: Path, changes: dict[str, Any]) -> Path:
    cfg = copy.deepcopy(BASE)
    for key, value in changes.items():
        text = yaml.safe_dump(value).replace("TMP", str(tmp_path))
        _set(cfg, key, yaml.safe_load(text))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(("changes", "line"), REFUSED, ids=[line.split(":")[0] + f"-{i}" for i, (_, line) in
                                                             enumerate(REFUSED)])  # fmt: skip
def test_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.txt").write_text("x")
    path = _write(tmp_path, changes)
    assert main(["validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert line.replace("TMP", str(tmp_path)) in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("changes", ACCEPTED)
def test_accepted(tmp_path: Path, changes: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, changes)
    assert main(["validate-config", str(path)]) == 0, capsys.readouterr().err


def test_schema_only_leaves_the_machine_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {"cameras.0.source": str(tmp_path / "missing.mp4")})
    assert main(["validate-config", "--schema-only", str(path)]) == 0
    assert main(["validate-config", str(path)]) == 2


def test_errors_never_show_a_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for source in ("foo://alice:Hunter-22@cam/s", "rtsp://alice:Hunter-22@cam:99999/s", "rtsp://alice:Hunter-22@"):
        path = _write(tmp_path, {"cameras.0.source": source})
        assert main(["validate-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "cameras.0.source" in err and "Hunter-22" not in err, err


def test_a_start_up_error_deep_in_task_groups_is_one_line() -> None:
    from livesight.daemon.run import first_leaf

    inner = ConfigError("mqtt.tls.ca_file: cannot load x")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [inner])])
    assert first_leaf(nested) is inner
