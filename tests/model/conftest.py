from __future__ import annotations

import numpy as np
import pytest

from livesight.model.qwen import QwenBackend
from tests.helpers import tiny_backend


@pytest.fixture(scope="session")
def backend() -> QwenBackend:
    return tiny_backend()  # the session's one tiny model (tests/helpers.py)


def square_frame(x: int, y: int, *, size: int = 56, bg: int = 90, hw: tuple[int, int] = (448, 448)) -> np.ndarray:
    f = np.full((*hw, 3), bg, np.uint8)
    f[y : y + size, x : x + size] = (255, 40, 40)
    return f
