"""The `echo` backend: no model at all, deliberately small. It proves the backend seam and runs the daemon's whole
test path in milliseconds.

- tokens: each 28×28 cell of the prepared frame becomes one token of D = 12 values, the mean colour of its four
  14×14 quarters scaled to [-1, 1] (numpy; handed over as a torch tensor, the type of the contract);
- context: counts what it is given (text tokens = words, visual tokens = kept cells) and the bytes a KV cache of
  that size would hold here (K and V, float32, D per token);
- answers: a template naming what it holds (and, first, what was recalled into the question: "Recalled N images
  (their labels) and: <the recalled lines>", so tests see recall reach the model; the last recalled segments are kept
  in `EchoContext.recalled_seen`) — or, for a question starting with `say:`, the rest of the question verbatim
  (tests script exact answers that way, e.g. `say: yes, a person` makes a watch fire). One word per token, streamed,
  capped at max_new_tokens; `token_delay_s` slows it down (tests of cancel and busy).

    model:
      backend: echo          # takes no preset or path
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import torch

from livesight.config import ModelConfig
from livesight.model.backend import (
    ContextMark,
    EncodedFrame,
    FrameAppend,
    GenerationResult,
    ModelInfo,
    Recalled,
    describe_stills,
)
from livesight.model.vision_input import prepare

TOKEN_PX = 28
DIM = 12  # 2×2 quarters × RGB
SAY = "say:"


def pooled_tokens(frame: np.ndarray, token_px: int = TOKEN_PX) -> np.ndarray:
    """[H, W, 3] uint8 (H, W multiples of token_px) → [gh*gw, 12] float32 in [-1, 1], row-major over (gh, gw)."""
    h, w, _ = frame.shape
    gh, gw, q = h // token_px, w // token_px, token_px // 2
    x = frame[: gh * token_px, : gw * token_px].astype(np.float32)
    x = x.reshape(gh, 2, q, gw, 2, q, 3).mean(axis=(2, 5))  # [gh, 2, gw, 2, 3]
    return (x.transpose(0, 2, 1, 3, 4).reshape(gh * gw, DIM) / 127.5 - 1.0).astype(np.float32)


class EchoContext:
    def __init__(self, system_prompt: str, *, token_delay_s: float = 0.0) -> None:
        self.frames = 0
        self.visual_tokens = 0
        self.last_pts: float | None = None
        self._text_tokens = len(system_prompt.split())
        self._max_pos = self._text_tokens - 1
        self._delay = token_delay_s
        self.recalled_seen: deque[Recalled] = deque(maxlen=16)  # what recent questions were given (tests)

    @property
    def n_tokens(self) -> int:
        return self._text_tokens + self.visual_tokens

    @property
    def max_position(self) -> int:
        return self._max_pos

    @property
    def kv_bytes(self) -> int:
        return self.n_tokens * DIM * 4 * 2  # K and V, float32

    def append_text(self, text: str) -> int:
        n = len(text.split())
        self._text_tokens += n
        self._max_pos += n
        return n

    def append_frame(self, tokens: torch.Tensor, t_seconds: float, grid_hw: tuple[int, int], keep: np.ndarray) -> int:
        return self.append_frames([(tokens, t_seconds, grid_hw, keep)])

    def append_frames(self, frames: Sequence[FrameAppend]) -> int:
        added = 0
        for tokens, t_seconds, grid_hw, keep in frames:
            n = grid_hw[0] * grid_hw[1]
            if tokens.shape[0] != n or keep.shape != (n,):
                raise ValueError(f"frame has {tokens.shape[0]} tokens and {keep.shape} mask for grid {grid_hw}")
            k = int(np.count_nonzero(keep))
            if k == 0:
                continue
            self.frames += 1
            self.visual_tokens += k
            self.last_pts = t_seconds
            self._max_pos += max(grid_hw)
            added += k
        return added

    def mark(self) -> ContextMark:
        return ContextMark(self, self.n_tokens, self._max_pos, False, (self.frames, self.visual_tokens, self.last_pts))

    def answer_text(self, question: str, as_of: ContextMark | None = None, recalled: Recalled | None = None) -> str:
        q = question.strip()
        if q.lower().startswith(SAY):
            return q[len(SAY) :].strip()
        frames, visual, last = (self.frames, self.visual_tokens, self.last_pts) if as_of is None else as_of.state
        when = f", the latest at {last:.1f} s" if last is not None else ""
        told = ""
        if recalled is not None:
            labels = " ".join(i.label for i in recalled.images)
            told = f"Recalled {len(recalled.images)} images ({labels}) and: {recalled.text} "
        return f"{told}I hold {frames} frames ({visual} visual tokens{when}). You asked: {q}"

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
        if as_of is not None and as_of.owner is not self:
            raise ValueError("generate(as_of=…) got a mark of another context")
        t0 = time.perf_counter()
        if recalled is not None:
            self.recalled_seen.append(recalled)
        words = self.answer_text(question, as_of, recalled).split()[:max_new_tokens]
        out: list[str] = []
        ttft = 0.0
        stopped = False
        for i, w in enumerate(words):
            if self._delay:
                time.sleep(self._delay)  # the model worker's thread, never the event loop
            if should_stop():
                stopped = True
                break
            if i == 0:
                ttft = (time.perf_counter() - t0) * 1000
            out.append(w)
            if on_text is not None:
                on_text(w if i == 0 else " " + w)
        return GenerationResult(
            text=" ".join(out),
            prompt_tokens=len(question.split()),
            completion_tokens=len(out),
            ttft_ms=ttft or (time.perf_counter() - t0) * 1000,
            stopped=stopped,
        )


class EchoBackend:
    def __init__(self, *, image_size: int = 448, system_prompt: str = "", token_delay_s: float = 0.0) -> None:
        self.info = ModelInfo(
            name="echo",
            random_weights=True,  # its answers say nothing about the video
            hidden_size=DIM,
            image_size=image_size,
            token_px=TOKEN_PX,
            tokens_per_second=2.0,
            device="cpu",
            dtype="float32",
        )
        self._system_prompt = system_prompt
        self.token_delay_s = token_delay_s

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        return prepare(rgb, self.info.image_size, TOKEN_PX)

    def encode(self, frames: Sequence[np.ndarray]) -> list[EncodedFrame]:
        return [
            EncodedFrame(torch.from_numpy(pooled_tokens(f)), (f.shape[0] // TOKEN_PX, f.shape[1] // TOKEN_PX))
            for f in frames
        ]

    def new_context(self) -> EchoContext:
        return EchoContext(self._system_prompt, token_delay_s=self.token_delay_s)

    def describe(
        self, images: Sequence[np.ndarray], prompt: str, *, max_new_tokens: int, times: Sequence[float] | None = None
    ) -> GenerationResult:
        """A fresh context given the stills: its answer names what it holds (or says what `say:` asks)."""
        return describe_stills(self, images, prompt, max_new_tokens=max_new_tokens, times=times)


def load_backend(cfg: ModelConfig) -> EchoBackend:
    return EchoBackend(image_size=cfg.image_size, system_prompt=cfg.system_prompt)
