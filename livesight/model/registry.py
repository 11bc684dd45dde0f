"""Model backends by name: `model.backend` in the config picks one (default `qwen2_5_vl`).

The table of names is `livesight/backends.py` (pure data, so the config validator reads it without importing the
model package); this module imports the chosen loader, only when asked, so it stays light too.

    backend = load_backend(cfg.model)          # cfg.model.backend names an entry of BACKENDS
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from livesight.backends import BACKENDS, DEFAULT_BACKEND, BackendSpec, backend_spec

if TYPE_CHECKING:
    from livesight.config import ModelConfig
    from livesight.model.backend import Backend

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "BackendSpec", "backend_spec", "load_backend"]


def load_backend(cfg: ModelConfig) -> Backend:
    """Build the backend `cfg.backend` names (blocking: loads weights). Raises ModelLoadError when it cannot."""
    module, _, attr = backend_spec(cfg.backend).loader.partition(":")
    loader = getattr(importlib.import_module(module), attr)
    return loader(cfg)
