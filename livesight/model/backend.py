"""The model backend contract: what the pipeline needs from a vision-language model.

All methods are blocking (they run a forward pass); the daemon calls them from one worker thread.
Tensor shapes are in comments: n = tokens of one frame (gh*gw), D = LLM hidden size.
The memory (`memory/camera_memory.py`) and the daemon use only what these protocols declare; a new backend is one
module implementing them plus one entry in `livesight/backends.py` (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

if TYPE_CHECKING:  # the contract names tensors; a backend without a local model (openai) never imports torch
    import torch

# The visual tokens a backend hands the pipeline: [n, D] (a torch tensor for the local backends). The daemon and the
# memory name this alias, never the tensor library: the backend's types stay behind this contract.
Tokens: TypeAlias = "torch.Tensor"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # e.g. "tiny-random" or the checkpoint path
    random_weights: bool  # True: answers are meaningless text
    hidden_size: int  # D
    image_size: int  # frames are resized to image_size x image_size before encoding
    token_px: int  # pixels per token side (28 for Qwen2.5-VL: 14-px patches, 2x2 merge)
    tokens_per_second: float  # temporal M-RoPE ids per second of stream time
    device: str
    dtype: str
    vision_encoder: bool = True  # False: no encoder runs here (openai): DTD decides from pixels, encode() unused

    @property
    def grid_hw(self) -> tuple[int, int]:
        g = self.image_size // self.token_px
        return (g, g)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    tokens: Tokens  # [n, D] LLM-input visual tokens (post PatchMerger), row-major over (gh, gw)
    grid_hw: tuple[int, int]  # (gh, gw)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    text: str
    prompt_tokens: int  # tokens prefilled for this question (not the cached context)
    completion_tokens: int
    ttft_ms: float
    stopped: bool  # True when should_stop() ended generation early


@dataclass(frozen=True, slots=True)
class ContextMark:
    """A moment of one LLMContext (`mark()`): `generate(..., as_of=mark)` answers as the context stood then."""

    owner: object  # the context it belongs to
    n_tokens: int  # tokens in the cache at the mark
    max_position: int  # largest position id at the mark
    vision_open: bool  # a vision segment was open at the mark
    state: Any = None  # whatever else the backend needs to answer as of the mark


@dataclass(frozen=True, slots=True)
class RecalledImage:
    """A past keyframe recalled into one answer: shown after `label` (its time as text)."""

    label: str  # e.g. "Keyframe at 14:03:40:"
    jpeg: bytes  # the stored JPEG


@dataclass(frozen=True, slots=True)
class Recalled:
    """Past moments recalled into one answer (livesight/timeline/recall.py): `text` (time-stamped caption lines),
    then each image after its time. A context appends them after its cached live window and before the question, and
    rolls them back with the question: the live window's cache is reused, never re-prefilled."""

    text: str
    images: tuple[RecalledImage, ...] = ()


@dataclass(frozen=True, slots=True)
class RecallRoom:
    """What a camera's memory leaves a recall: entries that ended after `live_start` (wall time) are still in view;
    `budget_tokens` the prompt tokens a recall may add; `image_tokens` what one recalled image costs."""

    live_start: float | None
    budget_tokens: int
    image_tokens: int


# (tokens [n, D], t_seconds, grid_hw, keep [n] bool): the arguments of one append_frame call
FrameAppend = tuple[Tokens, float, tuple[int, int], np.ndarray]


class LLMContext(Protocol):
    """A growing KV cache: system prompt, then visual tokens appended as frames arrive.

    A question is prefilled on top of the cache and generated from; afterwards the cache is cropped back,
    so a question costs only its own tokens.
    """

    @property
    def n_tokens(self) -> int: ...  # tokens in the KV cache

    @property
    def max_position(self) -> int: ...  # largest M-RoPE id used so far (text continues at max_position + 1)

    def append_text(self, text: str) -> int:
        """Prefill plain text (e.g. a caption of an old scene) at the next positions. Returns tokens added."""
        ...

    @property
    def kv_bytes(self) -> int: ...  # memory the cache holds (for stats)

    def append_frame(self, tokens: Tokens, t_seconds: float, grid_hw: tuple[int, int], keep: np.ndarray) -> int:
        """Prefill the kept tokens [k, D] of one frame with their original (t, h, w) M-RoPE ids. Returns k."""
        ...

    def append_frames(self, frames: Sequence[FrameAppend]) -> int:
        """`append_frame` for several frames at once (context rebuilds): same result, fewer forward passes."""
        ...

    def generate(
        self,
        question: str,
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_text: Callable[[str], None] | None = None,
        as_of: ContextMark | None = None,
        recalled: Recalled | None = None,
    ) -> GenerationResult:
        """Answer `question` from the cache (greedy). `on_text` gets decoded text deltas as they come. `as_of` (a
        mark of this context): answer as the context stood at the mark (what came after it is not seen).
        `recalled`: past moments appended after the cache and before the question, rolled back with it (their
        tokens count in the result's prompt_tokens)."""
        ...

    def mark(self) -> ContextMark:
        """This moment of the context, for a later generate(as_of=…) (a scene's caption generated after the scene's
        end, when the worker had more urgent work: the same caption as at the end)."""
        ...


class Backend(Protocol):
    """A vision-language model. Implementations register in `livesight.backends` under a `model.backend` name.

    Any exception raised by a call fails only what it was called for (one frame, one response): the model worker
    contains it, counts it and goes on (docs/reliability.md).
    """

    info: ModelInfo

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Resize an [H, W, 3] uint8 frame to the model's input size: [S, S, 3] uint8."""
        ...

    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        """Vision encoder on prepared frames (one batch). Blocking."""
        ...

    def new_context(self) -> LLMContext:
        """A fresh context holding the system prompt."""
        ...

    def describe(
        self, images: Sequence[np.ndarray], prompt: str, *, max_new_tokens: int, times: Sequence[float] | None = None
    ) -> GenerationResult:
        """Answer `prompt` about a few stills ([H, W, 3] uint8, oldest first; `times`: their stream times in seconds)
        in a context of their own: a past scene's keyframes, captioned later (timeline/backfill.py). The live
        contexts are not touched. Blocking (a backend whose generation is remote raises: it has an async way)."""
        ...


def describe_stills(
    backend: Backend,
    images: Sequence[np.ndarray],
    prompt: str,
    *,
    max_new_tokens: int,
    times: Sequence[float] | None = None,
) -> GenerationResult:
    """`Backend.describe` for a backend with a vision encoder and contexts: the stills are prepared, encoded in one
    batch and appended whole to a fresh context (one vision segment, at their times), then `prompt` is answered."""
    if not images:
        raise ValueError("describe: no images")
    if times is not None and len(times) != len(images):
        raise ValueError(f"describe: {len(times)} times for {len(images)} images")
    t = [float(x) - float(times[0]) for x in times] if times is not None else [float(i) for i in range(len(images))]
    t = [max(x, t[i - 1] if i else 0.0) for i, x in enumerate(t)]  # never back in time
    encoded = backend.encode([backend.prepare(img) for img in images])
    ctx = backend.new_context()
    whole = [np.ones(e.grid_hw[0] * e.grid_hw[1], bool) for e in encoded]
    ctx.append_frames([(e.tokens, ti, e.grid_hw, k) for e, ti, k in zip(encoded, t, whole, strict=True)])
    return ctx.generate(prompt, max_new_tokens=max_new_tokens)
