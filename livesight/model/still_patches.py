"""Streamed frames are stills: each frame once through the vision patch embedding, not temporal_patch_size times.

`patchify_still` gives `vision_input.patchify`'s patches holding the frame once (half the bytes); `StillPatchEmbed`
takes either: the patch embedding is a Conv3d whose kernel is the whole patch (a matrix product), and on a still frame
(the same picture in every temporal slot) it equals one product with the kernel summed over time — vLLM computes it as
a matrix product too; PyTorch's CPU Conv3d is 5x slower for this shape. Torch is imported here (the local model's
path only), never by `vision_input.prepare`, which serves backends without torch.
"""

from __future__ import annotations

import numpy as np
import torch

from livesight.model.vision_input import CLIP_MEAN, CLIP_STD


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
