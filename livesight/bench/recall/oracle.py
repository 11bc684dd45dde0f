"""The oracle describer (benchmark only): captions a timeline entry truthfully from the pixels of its stored keyframe
JPEGs, so retrieval is measured without real weights. It knows the palette and the shapes the stream can plant
(palette.py) and reads them back from the decoded pixels; it never sees the truth table.

    see(jpeg)                     → ["red van", "card reading CLOSED"] (what that picture shows), or ["black"]
    see_rgb(rgb)                  → the same from decoded pixels (the backfill hands its describer decoded keyframes)
    caption(jpegs, "the gate")    → "At the gate: a red van, a white card reading CLOSED."
    describe(images, "the gate")  → the same caption from decoded keyframes

How it reads: a pixel belongs to a palette colour when it is saturated (S > 0.5, V > 0.25) and its hue is within
11° of the colour's; a colour with ≥ 150 such pixels is a thing, whose shape is read from its bounding box (wide: a
van, tall: a person, square and full: a box, square and round: a ball). Near-white low-chroma regions of card size
are cards: the crop is matched against each word's rendered card (normalised correlation). A picture whose mean
brightness is under 6 % is black. A real captioner replaces this in the same harness (DESIGN.md §12).
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from functools import cache

import numpy as np

from livesight.bench.recall.palette import COLOURS, SIZE, WORDS, card_patch

MIN_PIXELS = 150
HUE_TOL = 11.0  # degrees


@cache
def _hues() -> dict[str, float]:
    return {name: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360 for name, rgb in COLOURS.items()}


@cache
def _templates() -> dict[str, np.ndarray]:
    return {w: _norm(card_patch(w).mean(axis=2)) for w in WORDS}


def _norm(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return (a - a.mean()) / (a.std() + 1e-6)


def decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _shape(mask: np.ndarray) -> str | None:
    rows = np.flatnonzero(mask.sum(axis=1) >= 3)
    cols = np.flatnonzero(mask.sum(axis=0) >= 3)
    if rows.size == 0 or cols.size == 0:
        return None
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    fill = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].sum() / float(h * w)
    if w >= 1.5 * h:
        return "van"
    if h >= 1.8 * w:
        return "person"
    return "box" if fill >= 0.88 else "ball"


def _cards(rgb: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[str]:
    white = (lo >= 185) & (hi - lo < 30)  # uint8: hi >= lo
    if white.sum() < 1500:
        return []
    rows = np.flatnonzero(white.sum(axis=1) >= 40)
    cols = np.flatnonzero(white.sum(axis=0) >= 12)
    if rows.size == 0 or cols.size == 0:
        return []
    cw, ch = SIZE["card"]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if y1 - y0 < ch // 2 or x1 - x0 < cw // 2:
        return []
    from PIL import Image  # the card as the frame's scale made it → the template's size

    grey = rgb[y0:y1, x0:x1].mean(axis=2).astype(np.uint8)
    crop = np.asarray(Image.fromarray(grey).resize((cw, ch), Image.Resampling.BILINEAR), np.float32)
    z = _norm(crop)
    scores = {w: float((z * t).mean()) for w, t in _templates().items()}
    best = max(scores, key=lambda w: scores[w])
    return [f"card reading {best}"] if scores[best] > 0.5 else []


def see(jpeg: bytes) -> list[str]:
    """What one keyframe shows: labels of the palette's things, or ["black"]."""
    return see_rgb(decode(jpeg))


def see_rgb(rgb: np.ndarray) -> list[str]:
    """What one decoded keyframe ([H, W, 3] uint8) shows."""
    r8, g8, b8 = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx8, mn8 = np.maximum(np.maximum(r8, g8), b8), np.minimum(np.minimum(r8, g8), b8)  # (.max(axis=2) is slow)
    if mx8.mean() < 0.06 * 255:
        return ["black"]
    # saturated and bright enough: S = (max - min) / max > 0.5, V > 0.25 (integer arithmetic: a fast first pass)
    vivid = (mx8.astype(np.int16) - mn8 > mx8 // 2) & (mx8 > 64)
    found: list[str] = []
    if vivid.sum() >= MIN_PIXELS:
        ys, xs = np.nonzero(vivid)
        f = rgb[ys, xs].astype(np.float32) / 255.0
        r, g, b = f[:, 0], f[:, 1], f[:, 2]
        mx, mn = f.max(axis=1), f.min(axis=1)
        d = mx - mn + 1e-6
        hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
        for name, h0 in _hues().items():
            near = np.abs((hue - h0 + 180.0) % 360.0 - 180.0) < HUE_TOL
            if near.sum() >= MIN_PIXELS:
                mask = np.zeros(vivid.shape, bool)
                mask[ys[near], xs[near]] = True
                if (shape := _shape(mask)) is not None:
                    found.append(f"{name} {shape}")
    return found + _cards(rgb, mn8, mx8)


def caption(jpegs: Sequence[bytes], place: str) -> str:
    """A truthful caption of an entry from its keyframe JPEGs (the union of what they show, in order)."""
    return describe([decode(j) for j in jpegs], place)


def describe(images: Sequence[np.ndarray], place: str) -> str:
    """A truthful caption of an entry from its decoded keyframes."""
    seen: list[str] = []
    for rgb in images:
        seen += [s for s in see_rgb(rgb) if s not in seen]
    things = [s for s in seen if s != "black"]
    where = f"At {place}"
    if things:
        return f"{where}: " + ", ".join(_article(t) for t in things) + "."
    if seen:
        return f"{where}: the picture is black (lights off or the lens covered)."
    return f"{where}: the empty view, nothing moving."


def _article(thing: str) -> str:
    if thing.startswith("card"):
        return "a white " + thing
    return ("an " if thing[0] in "aeiou" else "a ") + thing
