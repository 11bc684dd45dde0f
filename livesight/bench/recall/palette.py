"""What can appear on the synthetic cameras: saturated colours on desaturated backgrounds, four shapes, and white
text cards with one word. The stream draws them (stream.py); the oracle describer knows this vocabulary and reads it
back from the pixels of stored keyframes (oracle.py), never from the truth table.

    draw(canvas, thing, x, y, scale_x, scale_y)   # into a uint8 [H, W, 3] frame, top-left (x, y) in full-frame px
    card_patch(word)                              # the rendered card (the oracle's template)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

# name → RGB (backgrounds stay below saturation 0.3, these above 0.7)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "orange": (235, 130, 20),
    "yellow": (230, 205, 25),
    "green": (40, 165, 60),
    "cyan": (30, 190, 200),
    "blue": (35, 70, 215),
    "purple": (130, 50, 190),
    "pink": (235, 90, 170),
}
SHAPES = ("van", "box", "person", "ball")
WORDS = ("CLOSED", "OPEN", "DELIVERY", "SALE", "EXIT", "PARKING", "WELCOME", "POLICE", "TAXI", "REPAIRS")
SIZE = {"van": (132, 62), "box": (58, 58), "person": (30, 92), "ball": (50, 50), "card": (150, 46)}  # w, h (px)
CARD_BG = (246, 246, 240)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Thing:
    """One planted object: a coloured shape, or a text card (colour None, shape "card", word set)."""

    shape: str
    colour: str | None = None
    word: str | None = None

    @property
    def label(self) -> str:
        """How a caption names it ("red van", "card reading CLOSED")."""
        return f"card reading {self.word}" if self.shape == "card" else f"{self.colour} {self.shape}"


@cache
def card_patch(word: str) -> np.ndarray:
    """A white card with the word in black, [h, w, 3] uint8 (the font is Pillow's built-in one: no files needed)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = SIZE["card"]
    img = Image.new("RGB", (w, h), CARD_BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=24)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    draw.text(((w - (right - left)) // 2 - left, (h - (bottom - top)) // 2 - top), word, fill=INK, font=font)
    return np.asarray(img)


@cache
def _shape_mask(shape: str) -> np.ndarray:
    """[h, w] bool: where the shape's colour is (a van's wheels and a card are drawn apart)."""
    w, h = SIZE[shape]
    yy, xx = np.mgrid[0:h, 0:w]
    if shape == "ball":
        return (xx - w / 2 + 0.5) ** 2 + (yy - h / 2 + 0.5) ** 2 <= (w / 2) ** 2
    if shape == "person":  # a head over a body
        head = (xx - w / 2 + 0.5) ** 2 + (yy - 11.5) ** 2 <= 11**2
        body = (yy >= 24) & (xx >= 2) & (xx < w - 2)
        return head | body
    if shape == "van":  # body above the wheels
        return yy < h - 12
    return np.ones((h, w), bool)


def draw(canvas: np.ndarray, thing: Thing, x: float, y: float, sx: float = 1.0, sy: float = 1.0) -> None:
    """Draws `thing` into `canvas` with its top-left at (x, y) full-frame px, scaled by (sx, sy) (the cut tap's small
    frames). `alpha` effects (fades) are applied to the whole frame afterwards."""
    w, h = SIZE[thing.shape]
    x0, y0 = round(x * sx), round(y * sy)
    x1, y1 = round((x + w) * sx), round((y + h) * sy)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, canvas.shape[1]), min(y1, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    if sx == 1.0 and sy == 1.0:
        region = canvas[y0:y1, x0:x1]
        if thing.shape == "card":
            region[:] = card_patch(thing.word or "")[: y1 - y0, : x1 - x0]
            return
        mask = _shape_mask(thing.shape)[: y1 - y0, : x1 - x0]
        region[mask] = COLOURS[thing.colour or "red"]
        if thing.shape == "van":  # two dark wheels
            for cx in (0.22, 0.78):
                c = int(w * cx)
                region[h - 14 : h, c - 10 : c + 10] = (25, 25, 25)  # things are placed wholly inside the frame
        return
    # the cut tap's 64x48 frame: a block of the thing's mean colour is all it resolves
    colour = CARD_BG if thing.shape == "card" else COLOURS[thing.colour or "red"]
    canvas[y0:y1, x0:x1] = colour
