"""Model backends by name: `model.backend` in the config picks one (default `qwen2_5_vl`).

A backend is one module with a loader `(ModelConfig) -> Backend` (see `livesight/model/backend.py`) plus one entry
here. Loaders are imported only when chosen, so this module stays light: the config validator reads it without
importing torch or transformers.

    BACKENDS["my_model"] = BackendSpec("livesight.model.my_model:load", weights=True, about="…")
    backend = load_backend(cfg.model)          # cfg.model.backend == "my_model"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livesight.config import ModelConfig
    from livesight.model.backend import Backend

DEFAULT_BACKEND = "qwen2_5_vl"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    loader: str  # "package.module:function", the function taking a ModelConfig and returning a Backend
    weights: bool  # True: needs exactly one of model.preset / model.path; False: takes neither
    about: str  # one line for docs and error messages


BACKENDS: dict[str, BackendSpec] = {
    "qwen2_5_vl": BackendSpec(
        "livesight.model.qwen:load_backend",
        weights=True,
        about="Qwen2.5-VL family on HF transformers (checkpoints via model.path, or preset tiny-random)",
    ),
    "openai": BackendSpec(
        "livesight.model.remote.backend:load_backend",
        weights=False,
        about="an OpenAI-compatible vision server (Ollama, vLLM, llama.cpp, LM Studio, cloud) via model.base_url; "
        "fed only the frames pixel-mode DTD keeps",
    ),
    "echo": BackendSpec(
        "livesight.model.echo:load_backend",
        weights=False,
        about="no model: pooled pixels as tokens, template answers (tests, plumbing, load tests)",
    ),
}


def backend_spec(name: str) -> BackendSpec:
    """The spec of a registered backend; ValueError (naming the known ones) otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})") from None


def load_backend(cfg: ModelConfig) -> Backend:
    """Build the backend `cfg.backend` names (blocking: loads weights). Raises ModelLoadError when it cannot."""
    module, _, attr = backend_spec(cfg.backend).loader.partition(":")
    loader = getattr(importlib.import_module(module), attr)
    return loader(cfg)
