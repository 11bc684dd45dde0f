"""Config: every error names its field; ${ENV} substitution; validate-config exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livesight.config import load_config, substitute_env
from livesight.errors import ConfigError

GOOD = """
cameras:
  - id: door
    source: rtsp://cam.local/stream
    sample_fps: 2
model:
  preset: tiny-random
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_embedded_demo_config_is_valid() -> None:
    cfg = load_config(None)
    assert cfg.cameras[0].source == "builtin:demo"
    assert cfg.model.preset == "tiny-random"


def test_repo_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ has examples"
    for f in files:
        load_config(f, env={"LIVESIGHT_TOKEN": "x", "CAMERA_URL": "rtsp://127.0.0.1:8554/x"})


def test_good_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.cameras[0].id == "door"
    assert cfg.dtd.mode == "feature" and cfg.dtd.threshold == 0.5
    assert cfg.dtd_for(cfg.cameras[0]) is cfg.dtd


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        (GOOD + "bogus: 1\n", "bogus: Extra inputs are not permitted"),
        (GOOD.replace("sample_fps: 2", "sample_fps: fast"), "cameras.0.sample_fps"),
        (GOOD.replace("sample_fps: 2", "sample_fps: -1"), "cameras.0.sample_fps"),
        (GOOD.replace("sample_fps: 2", "sample_fps: 2\n    colour: red"), "cameras.0.colour"),
        (GOOD + "dtd: {mode: sideways}\n", "dtd.mode"),
        (GOOD + "dtd: {threshold: 2}\n", "dtd.threshold"),
        (GOOD + "server: {host: 0.0.0.0}\n", "auth_token is required"),
        (GOOD + "server: {port: 70000}\n", "server.port"),
        (GOOD + "server: {allowed_origins: ['*']}\n", "server.allowed_origins: '*' needs server.auth_token"),
        (GOOD.replace("preset: tiny-random", "preset: tiny-random\n  path: /x"), "exactly one of"),
        (GOOD + "memory: {token_budget: 3}\n", "memory.token_budget"),
        (GOOD.replace("id: door", "id: 'bad id!'"), "cameras.0.id"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, snippet: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, snippet))
    assert field in str(e.value)


def test_duplicate_camera_ids(tmp_path: Path) -> None:
    text = GOOD + "  - id: door\n    source: /tmp/x.mp4\n"
    text = text.replace("model:\n  preset: tiny-random\n", "") + "model:\n  preset: tiny-random\n"
    with pytest.raises(ConfigError, match="duplicate camera id 'door'"):
        load_config(write(tmp_path, text))


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("sample_fps: 2", "sample_fps: -1") + "dtd: {mode: sideways}\n"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert "cameras.0.sample_fps" in str(e.value) and "dtd.mode" in str(e.value)


def test_env_substitution() -> None:
    assert substitute_env("a ${X} b ${Y:-dflt}", {"X": "1"}) == "a 1 b dflt"
    with pytest.raises(ConfigError, match="MISSING_VAR"):
        substitute_env("${MISSING_VAR}", {})


def test_env_in_file(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("rtsp://cam.local/stream", "${CAM_URL}"))
    assert load_config(p, env={"CAM_URL": "rtsp://h/s"}).cameras[0].source == "rtsp://h/s"


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "cameras: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livesight", *args], capture_output=True, text=True, timeout=60)


def test_validate_config_cli(tmp_path: Path) -> None:
    ok = run_cli("validate-config", str(write(tmp_path, GOOD)))
    assert ok.returncode == 0 and ok.stdout.strip() == "OK"
    bad = run_cli("validate-config", str(write(tmp_path, GOOD + "dtd: {mode: sideways}\n")))
    assert bad.returncode == 2
    assert "dtd.mode" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("validate-config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read config" in missing.stderr


def test_configuration_doc_is_current() -> None:
    from livesight.config_doc import render

    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == render(), "regenerate: python -m livesight.config_doc > docs/configuration.md"


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ("dtd: {mode: 'off', keyframe_every_s: 5}\n", ["dtd.keyframe_every_s", "dtd.mode"]),
        ("dtd: {mode: relative, threshold: 1.0}\n", ["dtd.threshold", "dtd.mode"]),
        ("dtd: {mode: feature, pixel_precheck: 1.0}\n", ["dtd.pixel_precheck", "dtd.mode"]),
        ("model: {preset: tiny-random, image_size: 896}\nmemory: {token_budget: 512}\n", ["memory.token_budget"]),
    ],
)
def test_combinations_that_cannot_work_are_refused(tmp_path: Path, extra: str, fields: list[str]) -> None:
    text = GOOD.replace("model:\n  preset: tiny-random\n", "") if extra.startswith("model") else GOOD
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text + extra))
    for f in fields:
        assert f in str(e.value)


def test_cross_field_checks_name_the_camera(tmp_path: Path) -> None:
    text = GOOD.replace("sample_fps: 2\n", "sample_fps: 2\n    dtd: {mode: 'off', keyframe_every_s: 5}\n")
    with pytest.raises(ConfigError, match=r"cameras\.0\.dtd\.keyframe_every_s"):
        load_config(write(tmp_path, text))
    fine = GOOD + "dtd: {mode: pixel, threshold: 0.05, pixel_precheck: 0.2, keyframe_every_s: 5}\n"
    assert load_config(write(tmp_path, fine)).dtd.mode == "pixel"  # pixel mode ignores pixel_precheck: allowed
