"""What a remote model server is shown of a kept frame: the whole frame, or crops of the regions DTD kept.

DTD (pixel mode) marks which 28x28 regions of a prepared frame changed. A frame whose changed regions cover more
than `full_fraction` of it (a cut, a camera move) is sent whole; otherwise its changed regions are grouped into at
most `max_crops` boxes on the token grid (touching regions, padded by one region so the server sees some context)
and only those crops are sent. Boxes lie on the 28-px grid, so a Qwen2.5-VL server does not resize them and the
image cost is exact: one token per 28x28 px plus 2 per image (vision start/end).

Each image is JPEG-encoded once and kept as bytes and as a `data:` URL (servers such as Ollama take no other), so an
image sent again is byte-identical and servers' prefix caches (vLLM, llama.cpp) hit.

Pure functions (arrays in, values out); the model worker thread calls them (milliseconds per frame).
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass

import numpy as np

from livesight.imaging import encode_jpeg

TOKEN_PX = 28
IMAGE_OVERHEAD_TOKENS = 2  # <|vision_start|>, <|vision_end|>

Box = tuple[int, int, int, int]  # (row0, col0, row1, col1) on the token grid, end exclusive

_seq = itertools.count(1)


MIN_CELLS = 4  # Qwen2.5-VL resizes an image below 56x56 px (min_pixels 3136) up to it: at least 4 tokens


def image_tokens(width: int, height: int, token_px: int = TOKEN_PX) -> int:
    """Estimated tokens a Qwen2.5-VL-style server spends on one image: ~ pixels / 784 (at least 4) + 2."""
    return max(MIN_CELLS, round(width * height / (token_px * token_px))) + IMAGE_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True, eq=False)
class RemoteImage:
    """One image as the server gets it. `box` is None for a whole frame, else the crop's pixel box in the frame."""

    seq: int  # increasing per process: orders images, identifies them
    scene: int
    pts: float  # stream time of the frame (s)
    wall_time: float
    frame_wh: tuple[int, int]  # (W, H) of the whole prepared frame
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) px, None = whole frame
    jpeg: bytes
    data_url: str
    tokens: int  # estimated image tokens

    @property
    def whole(self) -> bool:
        return self.box is None

    def label(self) -> str:
        """The text part sent before the image: its time, and where a crop lies in the frame."""
        w, h = self.frame_wh
        if self.box is None:
            return f"t={self.pts:.1f}s, whole view ({w}x{h}):"
        x0, y0, x1, y1 = self.box
        return f"t={self.pts:.1f}s, changed region x {x0}-{x1}, y {y0}-{y1} of the {w}x{h} view:"


def change_boxes(keep: np.ndarray, grid_hw: tuple[int, int], max_crops: int, pad: int = 0) -> list[Box]:
    """Boxes (on the token grid) covering every kept region: groups of touching kept regions (8-connected), each
    grown to at least 2x2 regions (smaller images cost as much: MIN_CELLS) and padded by `pad`, overlapping boxes
    merged, then the pair whose union adds the least area merged until <= max_crops."""
    gh, gw = grid_hw
    mask = keep.reshape(gh, gw).astype(bool)
    seen = np.zeros_like(mask)
    boxes: list[Box] = []
    for r, c in zip(*np.nonzero(mask), strict=True):
        if seen[r, c]:
            continue
        stack = [(int(r), int(c))]
        seen[r, c] = True
        r0, c0, r1, c1 = int(r), int(c), int(r) + 1, int(c) + 1
        while stack:
            y, x = stack.pop()
            r0, c0, r1, c1 = min(r0, y), min(c0, x), max(r1, y + 1), max(c1, x + 1)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < gh and 0 <= nx < gw and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        r0, c0, r1, c1 = max(0, r0 - pad), max(0, c0 - pad), min(gh, r1 + pad), min(gw, c1 + pad)
        if r1 - r0 < 2:  # grow to 2 regions: down, else up
            r0, r1 = (r0, r0 + 2) if r0 + 2 <= gh else (max(0, r1 - 2), r1)
        if c1 - c0 < 2:
            c0, c1 = (c0, c0 + 2) if c0 + 2 <= gw else (max(0, c1 - 2), c1)
        boxes.append((r0, c0, r1, c1))
    return _merge(boxes, max_crops)


def _area(b: Box) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _merge(boxes: list[Box], max_crops: int) -> list[Box]:
    boxes = list(boxes)
    changed = True
    while changed:  # overlapping boxes (padding made them meet) become one
        changed = False
        for i, j in itertools.combinations(range(len(boxes)), 2):
            if _overlap(boxes[i], boxes[j]):
                boxes[i] = _union(boxes[i], boxes[j])
                del boxes[j]
                changed = True
                break
    while len(boxes) > max_crops:
        i, j = min(
            itertools.combinations(range(len(boxes)), 2),
            key=lambda p: _area(_union(boxes[p[0]], boxes[p[1]])) - _area(boxes[p[0]]) - _area(boxes[p[1]]),
        )
        boxes[i] = _union(boxes[i], boxes[j])
        del boxes[j]
        boxes = _merge(boxes, len(boxes))  # the union may now overlap another box
    return sorted(boxes)


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def plan_images(
    keep: np.ndarray,
    grid_hw: tuple[int, int],
    *,
    whole: bool,
    full_fraction: float,
    max_crops: int,
) -> list[Box] | None:
    """None: send the whole frame; else the crops' boxes on the token grid (no pixels touched: benchmarks use it)."""
    if whole or keep.mean() > full_fraction:
        return None
    boxes = change_boxes(keep, grid_hw, max_crops)
    if sum(_area(b) for b in boxes) > full_fraction * grid_hw[0] * grid_hw[1]:
        return None  # padding made the crops as big as the frame: one image is cheaper and clearer
    return boxes


def planned_tokens(boxes: list[Box] | None, grid_hw: tuple[int, int]) -> int:
    """Estimated image tokens of what `plan_images` chose."""
    if boxes is None:
        return grid_hw[0] * grid_hw[1] + IMAGE_OVERHEAD_TOKENS
    return sum(max(MIN_CELLS, _area(b)) + IMAGE_OVERHEAD_TOKENS for b in boxes)


class FeedGate:
    """Per camera: what of each decided frame goes to the server — the whole frame, crops, or nothing — within an
    image-token budget.

    - a scene's first frame (and the first frame of all) is sent whole;
    - a frame that changed in a few places: crops of those places; changed almost everywhere (camera motion, a light
      switched on): the whole frame;
    - the budget is a token bucket (`tokens_per_min`, bursts of `burst` tokens): what does not fit is held back and
      owed — the regions changed since they were last sent accumulate, and go (from the newest frame, so the server
      gets their current state) as soon as the bucket allows; a scene start owed goes whole, before anything else;
    - nothing changed and nothing owed: nothing.
    Pure bookkeeping over keep masks and times; the memory and the remote benchmark share it."""

    def __init__(self, full_fraction: float, max_crops: int, tokens_per_min: float, burst: int | None = None) -> None:
        self.full_fraction = full_fraction
        self.max_crops = max_crops
        self.rate = tokens_per_min / 60.0  # tokens per second; 0 = no limit
        self.burst = burst
        self._bucket: float | None = None  # filled on the first frame (its grid fixes the default burst)
        self._at: float | None = None
        self._owed: np.ndarray | None = None  # [gh*gw] bool: regions changed and not sent yet
        self._owe_whole = True  # the first frame, a scene start, or a grid change
        self.held_back = 0  # frames whose news waited for the budget

    def scene_started(self) -> None:
        self._owe_whole = True

    def plan(
        self, keep: np.ndarray, grid_hw: tuple[int, int], pts: float, *, whole: bool = False
    ) -> list[Box] | bool | None:
        """False: send nothing (now); None: the whole frame; else the crops' boxes."""
        n = grid_hw[0] * grid_hw[1]
        if self._owed is None or self._owed.size != n:
            self._owed, self._owe_whole = np.zeros(n, dtype=bool), True
        self._refill(pts, n)
        cells = keep | self._owed
        if not (cells.any() or self._owe_whole or whole):
            return False
        boxes = plan_images(
            cells, grid_hw, whole=whole or self._owe_whole, full_fraction=self.full_fraction, max_crops=self.max_crops
        )
        cost = planned_tokens(boxes, grid_hw)
        # a scene start may spend the whole bucket; anything else leaves one whole frame's worth for the next cut
        reserve = 0 if (whole or self._owe_whole) else n + IMAGE_OVERHEAD_TOKENS
        if self.rate > 0 and self._bucket is not None and cost + reserve > self._bucket:
            self._owed = cells  # held back: owed, sent as soon as the bucket allows
            self._owe_whole = self._owe_whole or whole
            self.held_back += 1
            return False
        if self.rate > 0 and self._bucket is not None:
            self._bucket -= cost
        self._owed = np.zeros(n, dtype=bool)
        self._owe_whole = False
        return boxes

    def _refill(self, pts: float, n: int) -> None:
        if self.rate <= 0:
            return
        cap = self.burst if self.burst is not None else max(2 * (n + IMAGE_OVERHEAD_TOKENS), int(self.rate * 10))
        if self._bucket is None or self._at is None:
            self._bucket, self._at = float(cap), pts
            return
        self._bucket = min(float(cap), self._bucket + max(0.0, pts - self._at) * self.rate)
        self._at = pts


def render_images(
    prepared: np.ndarray,
    boxes: list[Box] | None,
    *,
    scene: int,
    pts: float,
    wall_time: float,
    quality: int,
    token_px: int = TOKEN_PX,
) -> list[RemoteImage]:
    """The images of a planned frame: the whole frame (boxes None), or its crops, JPEG-encoded once."""
    h, w = prepared.shape[:2]
    if boxes is None:
        jpeg = encode_jpeg(prepared, quality)
        return [RemoteImage(next(_seq), scene, pts, wall_time, (w, h), None, jpeg, data_url(jpeg), image_tokens(w, h))]
    out: list[RemoteImage] = []
    for r0, c0, r1, c1 in boxes:
        x0, y0, x1, y1 = c0 * token_px, r0 * token_px, c1 * token_px, r1 * token_px
        jpeg = encode_jpeg(prepared[y0:y1, x0:x1], quality)
        tokens = image_tokens(x1 - x0, y1 - y0, token_px)
        out.append(
            RemoteImage(next(_seq), scene, pts, wall_time, (w, h), (x0, y0, x1, y1), jpeg, data_url(jpeg), tokens)
        )
    return out
