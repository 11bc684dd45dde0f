from __future__ import annotations

import numpy as np
import pytest

from livesight.config import ModelConfig
from livesight.model.qwen import QwenBackend, load_backend


@pytest.fixture(scope="session")
def backend() -> QwenBackend:
    return load_backend(ModelConfig(preset="tiny-random", max_new_tokens=8))


def square_frame(x: int, y: int, *, size: int = 56, bg: int = 90, hw: tuple[int, int] = (448, 448)) -> np.ndarray:
    f = np.full((*hw, 3), bg, np.uint8)
    f[y : y + size, x : x + size] = (255, 40, 40)
    return f
