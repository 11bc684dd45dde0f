"""The Qwen2.5-VL backend on HF transformers: one code path for the tiny random preset and real checkpoints.

Real checkpoints (Qwen/Qwen2.5-VL-3B-Instruct, -7B-Instruct, wyccccc/TimeChatOnline-7B, or a local directory) load
with `from_pretrained(..., local_files_only=True)`: from a directory or the local HF cache, never downloaded.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration

from livesight.config import ModelConfig
from livesight.errors import ModelLoadError
from livesight.model.backend import EncodedFrame, GenerationResult, ModelInfo, describe_stills
from livesight.model.context import QwenContext
from livesight.model.still_patches import StillPatchEmbed, patchify_still
from livesight.model.vision_input import CLIP_MEAN, CLIP_STD, prepare

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device is {name!r} but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("model.device is 'mps' but MPS is not available on this machine")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


class QwenBackend:
    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        random_weights: bool,
        image_size: int,
        system_prompt: str,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        self.model = model.eval()
        visual = model.model.visual
        if not isinstance(visual.patch_embed, StillPatchEmbed):  # streamed frames are stills: half the patch input
            visual.patch_embed = StillPatchEmbed(visual.patch_embed)
        self.tokenizer = tokenizer
        vc = model.config.vision_config
        self._patch = vc.patch_size
        self._merge = vc.spatial_merge_size
        self._mean, self._std = tuple(mean), tuple(std)
        self._system_prompt = system_prompt
        p = next(model.parameters())
        self.info = ModelInfo(
            name=name,
            random_weights=random_weights,
            hidden_size=model.config.text_config.hidden_size,
            image_size=image_size,
            token_px=self._patch * self._merge,
            tokens_per_second=float(vc.tokens_per_second),
            device=str(p.device),
            dtype=str(p.dtype).removeprefix("torch."),
        )

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.info.image_size, self.info.token_px)

    @torch.inference_mode()
    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        """One vision-encoder call for all frames (they may differ in size): [n_i, D] tokens per frame."""
        if not frames:
            return []
        pixels, grid_thw = patchify_still(  # each frame once: StillPatchEmbed folds the temporal slots
            list(frames), patch_size=self._patch, merge_size=self._merge, mean=self._mean, std=self._std
        )
        p = next(self.model.parameters())
        out = self.model.model.get_image_features(pixels.to(p.device, p.dtype), grid_thw.to(p.device))
        m = self._merge
        return [
            EncodedFrame(tokens=t, grid_hw=(int(g[1]) // m, int(g[2]) // m))
            for t, g in zip(out.pooler_output, grid_thw, strict=True)
        ]

    def encode_jpeg(self, jpeg: bytes) -> tuple[torch.Tensor, tuple[int, int]]:
        """A stored JPEG (a recalled keyframe) → its tokens [n, D] and grid, as a streamed frame of it would be."""
        with Image.open(io.BytesIO(jpeg)) as im:
            rgb = np.asarray(im.convert("RGB"))
        enc = self.encode([self.prepare(rgb)])[0]
        return enc.tokens, enc.grid_hw

    def new_context(self) -> QwenContext:
        return QwenContext(
            self.model,
            self.tokenizer,
            self._system_prompt,
            tokens_per_second=self.info.tokens_per_second,
            image_encoder=self.encode_jpeg,
        )

    @torch.inference_mode()
    def describe(
        self, images: Sequence[np.ndarray], prompt: str, *, max_new_tokens: int, times: Sequence[float] | None = None
    ) -> GenerationResult:
        """The stills through the vision tower into a fresh context, then `prompt` answered (live ones untouched)."""
        return describe_stills(self, images, prompt, max_new_tokens=max_new_tokens, times=times)


def model_threads(cfg: ModelConfig) -> int:
    """model.threads, or half the cores shared by the `parallel` units of work (at least 1 each): the decode threads
    and the event loop need the other half."""
    return cfg.threads or max(1, (os.cpu_count() or 2) // 2 // cfg.parallel)


def load_backend(cfg: ModelConfig) -> QwenBackend:
    torch.set_num_threads(model_threads(cfg))  # process-wide: the model runs in one worker thread
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.preset == "tiny-random":
        from livesight.model.tiny import build_tiny_model
        from livesight.model.tokenizer import qwen_tokenizer

        model = build_tiny_model(cfg.seed).to(device=device, dtype=dtype)
        return QwenBackend(
            model,
            qwen_tokenizer(),
            name="tiny-random",
            random_weights=True,
            image_size=cfg.image_size,
            system_prompt=cfg.system_prompt,
        )
    assert cfg.path is not None
    return _load_checkpoint(cfg.path, cfg, device, dtype)


def _load_checkpoint(path: str, cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> QwenBackend:
    local = Path(path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"model.path {path!r}: no config.json in that directory (not a checkpoint)")
    if not local.exists() and (path.startswith(("/", ".", "~")) or path.count("/") != 1):
        raise ModelLoadError(f"model.path {path!r}: no such directory")
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"cannot load model {path!r} (local directory or Hugging Face cache; downloads are off): {first}"
        ) from None
    mean, std = CLIP_MEAN, CLIP_STD
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        proc = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except (OSError, ValueError):
        log.info("no image processor config in %s: using the CLIP mean/std Qwen2.5-VL uses", path)
    model = model.to(device)
    log.info("loaded %s on %s (%s)", path, device, dtype)
    return QwenBackend(
        model,
        tokenizer,
        name=path,
        random_weights=False,
        image_size=cfg.image_size,
        system_prompt=cfg.system_prompt,
        mean=mean,
        std=std,
    )
