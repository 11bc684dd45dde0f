"""Backends by name: the registry builds what `model.backend` names; a checkpoint directory written with
save_pretrained loads through `model.path` and gives the same logits as the preset it was saved from; the echo
backend keeps the contract with numbers that can be checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livesight.config import ModelConfig
from livesight.errors import ModelLoadError
from livesight.model.echo import EchoBackend, pooled_tokens
from livesight.model.qwen import QwenBackend
from livesight.model.registry import BACKENDS, load_backend
from tests.model.conftest import square_frame


def context_logits(backend, frames: list[np.ndarray]) -> torch.Tensor:
    ctx = backend.new_context()
    for i, e in enumerate(backend.encode([backend.prepare(f) for f in frames])):
        ctx.append_frame(e.tokens, 0.5 * i, e.grid_hw, np.ones(e.tokens.shape[0], bool))
    ctx.append_text("What is happening?<|im_end|>\n<|im_start|>assistant\n")
    return ctx.last_logits()


def test_checkpoint_directory_loads_through_model_path_with_the_presets_logits(tmp_path: Path) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    preset = load_backend(ModelConfig(preset="tiny-random"))
    assert isinstance(preset, QwenBackend)
    ckpt = tmp_path / "tiny-ckpt"
    preset.model.save_pretrained(ckpt)
    preset.tokenizer.save_pretrained(ckpt)
    Qwen2VLImageProcessorPil(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(ckpt)

    loaded = load_backend(ModelConfig(path=str(ckpt)))
    assert isinstance(loaded, QwenBackend)
    assert loaded.info.name == str(ckpt) and not loaded.info.random_weights
    frames = [square_frame(40 + 30 * i, 100) for i in range(3)]
    ids = preset.tokenizer("<|im_start|>user\nhi<|im_end|>").input_ids
    assert loaded.tokenizer("<|im_start|>user\nhi<|im_end|>").input_ids == ids
    # the preprocessor config is read: our mean/std, not the CLIP defaults, so the vision input differs ...
    assert loaded._mean == (0.5, 0.5, 0.5) and loaded._std == (0.25, 0.25, 0.25)
    assert float((context_logits(loaded, frames) - context_logits(preset, frames)).abs().max()) > 1e-3
    # ... and with the preset's own normalisation the logits are the preset's
    loaded._mean, loaded._std = preset._mean, preset._std
    diff = float((context_logits(loaded, frames) - context_logits(preset, frames)).abs().max())
    assert diff < 1e-5, diff


def test_checkpoint_without_preprocessor_config_uses_clip_normalisation(tmp_path: Path) -> None:
    preset = load_backend(ModelConfig(preset="tiny-random"))
    preset.model.save_pretrained(tmp_path)
    preset.tokenizer.save_pretrained(tmp_path)
    loaded = load_backend(ModelConfig(path=str(tmp_path)))
    frames = [square_frame(60, 80)]
    assert float((context_logits(loaded, frames) - context_logits(preset, frames)).abs().max()) < 1e-5


def test_a_directory_that_is_not_a_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_backend(ModelConfig(path=str(tmp_path)))


def test_unknown_backend_is_a_config_error_naming_the_field() -> None:
    from livesight.config import parse_config
    from livesight.errors import ConfigError

    base = {"cameras": [{"id": "c", "source": "builtin:demo"}]}
    with pytest.raises(
        ConfigError, match=r"model\.backend: unknown backend 'nope' \(known: echo, openai, qwen2_5_vl\)"
    ):
        parse_config({**base, "model": {"backend": "nope", "preset": "tiny-random"}}, origin="t")
    with pytest.raises(ConfigError, match="backend 'echo' takes no 'preset' or 'path'"):
        parse_config({**base, "model": {"backend": "echo", "preset": "tiny-random"}}, origin="t")
    assert parse_config({**base, "model": {"backend": "echo"}}, origin="t").model.backend == "echo"
    assert set(BACKENDS) == {"qwen2_5_vl", "echo", "openai"}


def test_echo_backend_tokens_are_pooled_pixels() -> None:
    backend = load_backend(ModelConfig(backend="echo", image_size=56))
    assert isinstance(backend, EchoBackend)
    frame = np.zeros((56, 56, 3), np.uint8)
    frame[:14, :14] = (255, 0, 0)  # top-left quarter of cell (0, 0)
    frame[28:, 28:] = 255  # all of cell (1, 1)
    (enc,) = backend.encode([backend.prepare(frame)])
    assert enc.grid_hw == (2, 2) and enc.tokens.shape == (4, 12)
    t = enc.tokens.numpy()
    np.testing.assert_allclose(t[0, :3], [1, -1, -1])  # quarter (0, 0) of cell (0, 0): red
    np.testing.assert_allclose(t[0, 3:], -1)  # its other quarters: black
    np.testing.assert_allclose(t[1], -1)
    np.testing.assert_allclose(t[3], 1)
    np.testing.assert_array_equal(pooled_tokens(frame), t)


def test_echo_context_counts_tokens_and_streams_template_answers() -> None:
    backend = EchoBackend(image_size=56, system_prompt="two words")
    ctx = backend.new_context()
    assert ctx.n_tokens == 2
    tokens = torch.zeros(4, 12)
    keep = np.array([True, False, True, True])
    assert ctx.append_frames([(tokens, 1.0, (2, 2), keep), (tokens, 2.0, (2, 2), np.zeros(4, bool))]) == 3
    assert ctx.append_text("a caption here") == 3
    assert ctx.n_tokens == 8 and ctx.kv_bytes == 8 * 12 * 4 * 2
    deltas: list[str] = []
    r = ctx.generate("what now?", max_new_tokens=64, on_text=deltas.append)
    assert r.text == "I hold 1 frames (3 visual tokens, the latest at 1.0 s). You asked: what now?"
    assert "".join(deltas) == r.text and r.completion_tokens == len(deltas) == 16 and not r.stopped
    r = ctx.generate("say: yes, a person", max_new_tokens=2)
    assert r.text == "yes, a" and r.completion_tokens == 2
    r = ctx.generate("say: never", max_new_tokens=8, should_stop=lambda: True)
    assert r.stopped and r.text == "" and r.completion_tokens == 0
    with pytest.raises(ValueError, match="mask"):
        ctx.append_frame(tokens, 3.0, (2, 2), np.ones(3, bool))
