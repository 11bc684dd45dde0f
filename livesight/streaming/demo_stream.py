"""The built-in demo stream (`builtin:demo`): generated locally, with motion and a hard cut every few seconds.

Each scene has its own background (gradient, checkerboard, stripes, noise …) and two moving shapes; the
background changes completely at every cut, so DTD and scene detection have something to show.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

WIDTH, HEIGHT, FPS = 640, 360, 10.0
SCENE_S = 5.0


def _backgrounds(rng: np.random.Generator) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    bgs = []
    g = np.stack([xx * 255 // WIDTH, yy * 255 // HEIGHT, np.full_like(xx, 128)], -1)
    bgs.append(g)
    c = ((xx // 40 + yy // 40) % 2) * 160 + 40
    bgs.append(np.stack([c, c // 2, 255 - c], -1))
    s = ((xx + yy) // 24 % 2) * 200 + 30
    bgs.append(np.stack([s // 3, s, s // 2], -1))
    bgs.append((rng.random((HEIGHT, WIDTH, 3)) * 120 + 60).astype(np.int64))
    r = np.hypot(xx - WIDTH / 2, yy - HEIGHT / 2)
    bgs.append(np.stack([(r * 2) % 255, np.full_like(r, 60), 255 - (r * 2) % 255], -1))
    return [b.astype(np.uint8) for b in bgs]


def demo_frames(seed: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """Endless (pts seconds, RGB frame) at FPS; a cut every SCENE_S seconds."""
    rng = np.random.default_rng(seed)
    bgs = _backgrounds(rng)
    i = 0
    while True:
        t = i / FPS
        scene = int(t // SCENE_S)
        f = bgs[scene % len(bgs)].copy()
        x = int((WIDTH - 80) * (0.5 + 0.5 * np.sin(t * 1.3 + scene)))
        y = int((HEIGHT - 80) * (0.5 + 0.5 * np.cos(t * 0.9)))
        f[y : y + 80, x : x + 80] = (250, 250, 250)
        x2 = int((i * 12) % (WIDTH - 50))
        f[HEIGHT - 90 : HEIGHT - 40, x2 : x2 + 50] = (230, 30, 30)
        yield t, f
        i += 1
