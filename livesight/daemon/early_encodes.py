"""Encodings made ahead: the frame a camera's cut tap holds as a likely scene start is encoded while the tap's next
frame decides (0.1 s at 10 fps), so when the tap confirms the cut and the frame is sampled, the model worker's
pipeline finds its vision tokens ready and only DTD, the scene detector and memory remain before the boundary (and
its proactive message) is known.

The vision encoder is a pure function of the prepared frame, so an encoding made ahead is the one the pipeline would
make; nothing of the camera's state (DTD, detector, memory) is touched ahead. If the tap drops the frame (a flash),
its encoding is never used and is replaced by the camera's next candidate. Bounded: one frame to encode and one
encoding per camera (the newest wins).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from livesight.model.backend import Backend, EncodedFrame

log = logging.getLogger(__name__)

EPS = 1e-6


class EarlyEncodes:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._todo: dict[str, tuple[float, np.ndarray]] = {}  # camera → (pts, rgb) to encode
        self._ready: dict[str, tuple[float, np.ndarray, EncodedFrame]] = {}  # camera → (pts, prepared, encoded)
        self.made = 0
        self.used = 0
        self.failed = 0
        self.skipped = 0  # candidates not encoded ahead (the camera's frames were waiting: the worker is behind)

    def put(self, camera: str, pts: float, rgb: np.ndarray) -> None:
        """A frame the tap holds (on the loop): to encode ahead."""
        with self._lock:
            self._todo[camera] = (pts, rgb)
            self._ready.pop(camera, None)

    def __len__(self) -> int:
        """Frames waiting to be encoded."""
        return len(self._todo)

    def next(self) -> tuple[str, float, np.ndarray] | None:
        """The oldest frame to encode (taken off the list), or None."""
        with self._lock:
            if not self._todo:
                return None
            camera = next(iter(self._todo))
            pts, rgb = self._todo.pop(camera)
            return camera, pts, rgb

    def encode(self, camera: str, pts: float, rgb: np.ndarray) -> None:
        """In a model worker thread: prepare and encode; a failure is counted (the pipeline encodes it again)."""
        try:
            prepared = self.backend.prepare(rgb)
            encoded = self.backend.encode([prepared])[0]
        except Exception:  # the frame is encoded again in the pipeline, which reports its error
            self.failed += 1
            if self.failed <= 3:
                log.exception("camera %s: encoding ahead failed", camera)
            return
        with self._lock:
            if camera not in self._todo:  # no newer candidate meanwhile
                self._ready[camera] = (pts, prepared, encoded)
                self.made += 1

    def take(self, camera: str, pts: float) -> tuple[np.ndarray, EncodedFrame] | None:
        """The prepared frame and its encoding, when this frame (camera, pts) was encoded ahead."""
        with self._lock:
            got = self._ready.get(camera)
            if got is None or abs(got[0] - pts) > EPS:
                return None
            del self._ready[camera]
            self.used += 1
            return got[1], got[2]
