"""Frames → Qwen2.5-VL vision-encoder input, vectorised in torch (the PIL image processor takes ~6 ms a frame).

`prepare` resizes a frame so that its area is about image_size² with both sides multiples of 28 (aspect kept).
`patchify` produces exactly what Qwen2VLImageProcessorPil produces for such an image (checked by a test): each frame
is one temporal step holding the frame twice (temporal_patch_size 2), patches ordered merge-window by merge-window.
`patchify_still` gives the same patches holding the frame once (half the bytes); `StillPatchEmbed` takes either: the
patch embedding is a Conv3d whose kernel is the whole patch (a matrix product), and on a still frame (the same
picture in every temporal slot) it equals one product with the kernel summed over time — vLLM computes it as a
matrix product too; PyTorch's CPU Conv3d is 5x slower for this shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

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


def patchify_still(
    frames: list[np.ndarray],
    *,
    patch_size: int = 14,
    merge_size: int = 2,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`patchify` with each frame once, not temporal_patch_size times: [patches, 3*ps*ps] (for StillPatchEmbed).
    Few copies per frame (the hot path; `patchify` makes five full-frame float copies): the uint8 pixels channels
    first, one float copy scaled and shifted in place, then laid out patch by patch."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(3, 1, 1)  # (x / 255 - mean) / std = x * a + b
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(3, 1, 1)
    m, ps = merge_size, patch_size
    out, grids = [], []
    for rgb in frames:
        h, w = rgb.shape[:2]
        gh, gw = h // ps, w // ps
        x = torch.from_numpy(np.ascontiguousarray(rgb[: gh * ps, : gw * ps].transpose(2, 0, 1))).float()
        x.mul_(scale).add_(shift)  # [3, H, W]
        x = x.view(3, gh // m, m, ps, gw // m, m, ps).permute(1, 4, 2, 5, 0, 3, 6)  # windows, cells, C, y, x
        out.append(x.reshape(gh * gw, 3 * ps * ps))
        grids.append((1, gh, gw))
    return torch.cat(out), torch.tensor(grids, dtype=torch.long)


class StillPatchEmbed(torch.nn.Module):
    """Replaces Qwen2.5-VL's vision patch embedding (a Conv3d with kernel = stride = the patch) by the same product
    done as a matrix multiply: patches of [C*T*P*P] (the processor's layout) use the kernel as it is; patches of
    [C*P*P] (a still frame, `patchify_still`) use the kernel summed over its T temporal slots — exactly the result
    for the frame repeated in every slot, with half the input."""

    def __init__(self, original: torch.nn.Module) -> None:
        super().__init__()
        self.proj = original.proj  # same parameter, same state-dict key
        self.embed_dim = int(original.embed_dim)
        self._still: tuple[tuple[int, int, torch.dtype, torch.device], torch.Tensor] | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        w = self.proj.weight  # [E, C, T, P, P]
        x = hidden_states.to(w.dtype)
        if x.shape[-1] == w[0].numel():
            return torch.nn.functional.linear(x, w.reshape(w.shape[0], -1))
        if x.shape[-1] != w[0, :, 0].numel():
            raise ValueError(f"patches of {x.shape[-1]} values for a patch embedding of {tuple(w.shape[1:])}")
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._still is None or self._still[0] != key:
            self._still = (key, w.sum(dim=2).reshape(w.shape[0], -1))
        return torch.nn.functional.linear(x, self._still[1])


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
