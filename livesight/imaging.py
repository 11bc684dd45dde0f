"""Pictures of what the model saw: the DTD overlay and JPEG encoding. Pure functions (arrays in, bytes out).

Everyone may import this module (like types.py): it does no I/O and knows no model or wire format. The callers run
it off the event loop (it costs milliseconds per frame).

    overlay(prepared, keep, (gh, gw))   # dropped 28x28 token regions dimmed, kept ones outlined
    encode_jpeg(rgb, quality=80)        # → JPEG bytes
    encode_jpeg(rgb, max_side=640)      # → JPEG bytes, scaled down so its longest side is at most 640 px
    decode_jpeg(data)                   # → [H, W, 3] uint8 RGB
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DIM = 0.35  # brightness of a dropped token's region
OUTLINE = (0, 230, 118)  # RGB border of a kept token's region
JPEG_QUALITY = 80


def overlay(prepared: np.ndarray, keep: np.ndarray, grid_hw: tuple[int, int], token_px: int = 28) -> np.ndarray:
    """[H, W, 3] uint8 frame and its [gh*gw] keep mask → a copy with dropped regions dimmed, kept ones outlined."""
    gh, gw = grid_hw
    if keep.size != gh * gw:
        raise ValueError(f"keep mask has {keep.size} entries, grid {gh}x{gw} needs {gh * gw}")
    if prepared.shape[0] < gh * token_px or prepared.shape[1] < gw * token_px:
        raise ValueError(f"frame {prepared.shape[:2]} is smaller than the {gh}x{gw} token grid")
    img = prepared.copy()
    region = img[: gh * token_px, : gw * token_px].reshape(gh, token_px, gw, token_px, 3)  # a view into img
    kept = keep.reshape(gh, 1, gw, 1, 1).astype(bool)
    np.copyto(region, (region * DIM).astype(np.uint8), where=~kept)
    # Outlines of every kept region at once: its first/last row and column, through the same 5-d view.
    edge = np.zeros((token_px, token_px), dtype=bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    mask = kept & edge.reshape(1, token_px, 1, token_px, 1)
    np.copyto(region, np.array(OUTLINE, np.uint8), where=mask)
    return img


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY, *, max_side: int | None = None) -> bytes:
    """[H, W, 3] uint8 RGB → baseline JPEG bytes. `max_side`: a larger picture is scaled down (aspect kept) so its
    longest side is at most this many pixels; a smaller one is never scaled up."""
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if max_side is not None and max(img.size) > max_side:
        w, h = img.size
        k = max_side / max(w, h)
        img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes → [H, W, 3] uint8 RGB. Raises ValueError for bytes that are not a picture."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"not a JPEG picture: {e}") from None
