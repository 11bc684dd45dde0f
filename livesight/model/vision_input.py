"""Frames → Qwen2.5-VL vision-encoder input, vectorised in torch (the PIL image processor takes ~6 ms a frame).

`prepare` resizes a frame so that its area is about image_size² with both sides multiples of 28 (aspect kept).
`patchify` produces exactly what Qwen2VLImageProcessorPil produces for such an image (checked by a test): each frame
is one temporal step holding the frame twice (temporal_patch_size 2), patches ordered merge-window by merge-window.
The hot path's cheaper form of the same input (each frame once, half the bytes) is in still_patches.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def target_size(height: int, width: int, image_size: int, token_px: int = 28) -> tuple[int, int]:
    """(H, W) multiples of token_px with H*W ≈ image_size², aspect ratio kept."""
    scale = math.sqrt(image_size * image_size / (height * width))
    gh = max(1, round(height * scale / token_px))
    gw = max(1, round(width * scale / token_px))
    return gh * token_px, gw * token_px


def prepare(rgb: np.ndarray, image_size: int, token_px: int = 28) -> np.ndarray:
    """[H, W, 3] uint8 → [h, w, 3] uint8 resized (bicubic) to the model's input size."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 frame, got {rgb.shape} {rgb.dtype}")
    h, w = target_size(rgb.shape[0], rgb.shape[1], image_size, token_px)
    if (h, w) == rgb.shape[:2]:
        return np.array(rgb)  # a writable copy: the caller may keep it as a DTD reference
    return np.array(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))


def patchify(
    frames: list[np.ndarray],
    *,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared frames → (pixel_values [sum(gh*gw patches), 3*tps*ps*ps], grid_thw [n_frames, 3])."""
    import torch  # here, not at the top: `prepare` serves backends without torch (openai)

    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    out, grids = [], []
    for rgb in frames:
        h, w = rgb.shape[:2]
        gh, gw = h // patch_size, w // patch_size
        x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255.0  # [1, 3, H, W]
        x = (x - mean_t) / std_t
        x = x.expand(temporal_patch_size, -1, -1, -1)  # the frame in both temporal slots
        c = x.shape[1]
        m, ps = merge_size, patch_size
        x = x.reshape(1, temporal_patch_size, c, gh // m, m, ps, gw // m, m, ps)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        out.append(x.reshape(gh * gw, c * temporal_patch_size * patch_size * patch_size))
        grids.append((1, gh, gw))
    return torch.cat(out), torch.tensor(grids, dtype=torch.long)
