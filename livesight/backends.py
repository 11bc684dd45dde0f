"""Model backends by name (pure data): what `model.backend` may name, read by the config validator without importing
the model package (no torch). `livesight/model/registry.py` imports the chosen loader when the daemon starts.

A backend is one module with a loader `(ModelConfig) -> Backend` (see `livesight/model/backend.py`) plus one entry
here:

    BACKENDS["my_model"] = BackendSpec("livesight.model.my_model:load", weights=True, about="…")
"""

from __future__ import annotations

from dataclasses import dataclass

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
