"""`server.auth_token` is a secret like `model.api_key` and `fleet.node_token`: the loaded config, rendered every way
the CLI renders it (validate-config's output, repr/str, a dump, the logs of a start, /healthz and /metrics), never
shows it; the token still opens the port."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from livesight.cli import main
from livesight.config import load_config, load_gateway_config
from tests.helpers import http_get
from tests.remote.helpers import running

TOKEN = "Bearer-Secret-4f2a9c81d7"
NODE_TOKEN = "fleet-credential-77aa01"

CONFIG = f"""
cameras:
  - id: cam
    source: builtin:demo
model: {{backend: echo}}
memory: {{database: null}}
proactive: {{enabled: false}}
server: {{host: 127.0.0.1, port: 0, auth_token: "{TOKEN}", allowed_origins: ["*"]}}
logging: {{level: DEBUG}}
"""


def _no_token(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode()
    assert TOKEN.encode() not in data, f"{where} shows the bearer token"


def test_the_loaded_config_never_shows_the_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    assert TOKEN in cfg.secrets()  # the value is there (for the port to compare, the log to be scrubbed of)
    for where, text in (
        ("repr", repr(cfg)),
        ("str", str(cfg)),
        ("repr(server)", repr(cfg.server)),
        ("model_dump", str(cfg.model_dump())),
        ("model_dump_json", cfg.model_dump_json()),
        ("model_dump(mode=json)", json.dumps(cfg.model_dump(mode="json"))),
    ):
        _no_token(where, text)
    assert main(["validate-config", str(path)]) == 0
    out = capsys.readouterr()
    _no_token("validate-config", out.out + out.err)
    path.write_text(CONFIG + "bogus: 1\n")  # an error shows the config's fields, never the token
    assert main(["validate-config", str(path)]) == 2
    out = capsys.readouterr()
    assert "bogus" in out.err
    _no_token("validate-config's error", out.out + out.err)


def test_the_gateways_config_never_shows_the_token(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        CONFIG.replace("builtin:demo", "rtsp://cam.lan/s")
        + f'mqtt: {{enabled: true}}\nfleet: {{nodes: [a], node_token: "{NODE_TOKEN}"}}\n'
    )
    cfg = load_gateway_config(path)
    assert TOKEN in cfg.secrets()  # what its log is scrubbed of
    for where, text in (("repr", repr(cfg)), ("dump", str(cfg.model_dump())), ("json", cfg.model_dump_json())):
        _no_token(where, text)
        assert NODE_TOKEN not in text, where


async def test_a_start_logs_and_serves_no_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    caplog.set_level(logging.DEBUG)
    async with running(cfg) as app:
        status, _, body = await http_get(app.port, "/healthz", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["status"] in ("ok", "starting", "degraded")
        _no_token("/healthz", body)
        status, _, body = await http_get(app.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        _no_token("/metrics", body)
        status, _, _ = await http_get(app.port, "/metrics", {"Authorization": "Bearer not-the-token"})
        assert status == 401  # the secret still guards the port
    assert "listening on" in caplog.text  # the start was logged
    _no_token("the log", caplog.text)
