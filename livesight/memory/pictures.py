"""What the scene detectors compare: normalised 16x16 thumbnails (block means, so sensor noise averages out; zero
mean and unit spread, so light changes are not content changes), their distances (plain, and after the best small
global shift: a pan moves the picture, a cut replaces it) and colour histograms."""

from __future__ import annotations

import numpy as np

GRID = 16  # thumbnail cells per side
HIST_BINS = 24


def thumbnail(frame: np.ndarray, grid: int = GRID) -> np.ndarray:
    """[H, W, 3] uint8 → [grid, grid, 3] float32 block means (0–255), from a strided sample of the frame."""
    h, w = frame.shape[:2]
    sy, sx = max(1, h // (grid * 8)), max(1, w // (grid * 8))  # ~8x8 samples per cell
    small = frame[::sy, ::sx]
    ch, cw = small.shape[0] // grid, small.shape[1] // grid
    small = small[: ch * grid, : cw * grid].reshape(grid, ch, grid, cw, -1)
    return small.mean(axis=(1, 3), dtype=np.float32)


def histogram(frame: np.ndarray) -> np.ndarray:
    """Colour distribution of a strided sample of the frame, each channel over ±3 spreads of the frame's own mean
    (light changes shift it little; motion keeps it; a cut replaces it) → [3 * HIST_BINS] float32, sums to 1."""
    h, w = frame.shape[:2]
    s = frame[:: max(1, h // 56), :: max(1, w // 56)].reshape(-1, 3).astype(np.float32)
    z = (s - s.mean()) / max(float(s.std()), 1.0)
    idx = np.clip(((z + 3.0) * (HIST_BINS / 6.0)).astype(np.int32), 0, HIST_BINS - 1) + np.arange(3) * HIST_BINS
    out = np.bincount(idx.reshape(-1), minlength=3 * HIST_BINS).astype(np.float32)
    return out / out.sum()


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance of two histograms: 0 same distribution, 1 disjoint."""
    return float(np.abs(a - b).sum()) * 0.5


def normalise(thumb: np.ndarray, flat_level: float) -> np.ndarray | None:
    """Zero mean, unit spread; None for a flat picture (spread below flat_level grey levels)."""
    sd = float(thumb.std())
    if sd < flat_level:
        return None
    return (thumb - float(thumb.mean())) / sd


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


SHIFTS = [(dy, dx) for dy in range(-3, 4) for dx in range(-5, 6)]  # cells: up to 1/3 of the width, 1/5 the height


def moved_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The distance of a to b after the best global shift of a few cells (a pan or a shake moves the picture; a cut
    changes it): min over SHIFTS of the mean absolute difference on the overlap."""
    g = a.shape[0]
    best = distance(a, b)
    for dy, dx in SHIFTS:
        if dy == 0 and dx == 0:
            continue
        ya, yb = (slice(dy, g), slice(0, g - dy)) if dy >= 0 else (slice(0, g + dy), slice(-dy, g))
        xa, xb = (slice(dx, g), slice(0, g - dx)) if dx >= 0 else (slice(0, g + dx), slice(-dx, g))
        d = float(np.abs(a[ya, xa] - b[yb, xb]).mean())
        best = min(best, d)
    return best
