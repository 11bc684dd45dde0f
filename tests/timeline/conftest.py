"""Fixtures: a real event log file with its timeline store, and real JPEGs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livesight.config import TimelineConfig
from livesight.memory.event_log import EventLog
from livesight.timeline.store import TimelineStore, keyframe_dir


def jpeg(value: int, size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def open_store(db: Path, **cfg: object) -> TimelineStore:
    store = TimelineStore(EventLog(db), keyframe_dir(str(db)), TimelineConfig(**cfg))  # type: ignore[arg-type]
    store.open()
    return store


def close_store(store: TimelineStore) -> None:
    store.close()
    store.log.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TimelineStore]:
    s = open_store(tmp_path / "ev.sqlite")
    yield s
    close_store(s)
