"""`model.backend: openai` settings: validated at start with errors naming the field; the key never shows."""

from __future__ import annotations

import pytest

from livesight.config import REMOTE_DTD_THRESHOLD, load_config, parse_config
from livesight.errors import ConfigError


def conf(model: dict, **top) -> dict:
    return {"cameras": [{"id": "cam", "source": "builtin:demo"}], "model": {"backend": "openai", **model}, **top}


OK = {"base_url": "http://127.0.0.1:11434/v1", "name": "qwen2.5vl:7b"}


def test_the_openai_backend_defaults_dtd_to_pixel_mode() -> None:
    cfg = parse_config(conf(OK))
    assert cfg.dtd.mode == "pixel" and cfg.dtd.threshold == REMOTE_DTD_THRESHOLD
    cfg = parse_config(conf(OK, dtd={"threshold": 0.1}, cameras=[{"id": "c", "source": "x", "dtd": {}}]))
    assert cfg.dtd.mode == "pixel" and cfg.dtd.threshold == 0.1 and cfg.cameras[0].dtd.mode == "pixel"
    assert parse_config(conf(OK)).model.extra_body == {}, "no vendor fields by default"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (conf({"name": "m"}), "needs base_url"),
        (conf({"base_url": "http://h/v1"}), "needs name"),
        (conf({**OK, "base_url": "ftp://h"}), "model.base_url"),
        (conf({**OK, "concurrent_requests": 0}), "model.concurrent_requests"),
        (conf({**OK, "images_per_request": 100}), "model.images_per_request"),
        (conf({**OK, "request_timeout_s": 0}), "model.request_timeout_s"),
        (conf(OK, dtd={"mode": "feature"}), "dtd.mode 'feature' needs a vision encoder"),
        (
            conf(OK, cameras=[{"id": "c", "source": "x", "dtd": {"mode": "relative"}}]),
            "cameras.0.dtd.mode 'relative'",
        ),
        ({"cameras": [{"id": "c", "source": "x"}], "model": {"backend": "echo", **OK}}, "only for backend 'openai'"),
    ],
)
def test_what_serve_cannot_run_is_refused_naming_the_field(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert needle in str(e.value)


def test_the_api_key_comes_from_the_environment_and_never_shows(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "cameras: [{id: cam, source: 'builtin:demo'}]\n"
        "model: {backend: openai, base_url: 'https://api.example.com/v1', name: gpt-4o-mini, api_key: '${KEY}'}\n"
    )
    cfg = load_config(p, env={"KEY": "sk-very-secret"})
    assert cfg.model.api_key is not None and cfg.model.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(cfg.model_dump())
    assert "sk-very-secret" not in cfg.model_dump_json()
