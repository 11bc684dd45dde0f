"""`QwenContext`: a growing KV cache of (system prompt, captions, kept visual tokens), and answers from it.

Layout of the cached sequence (Qwen chat format):

    <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n      text, 1-D positions
    [caption text …]                                                 text (append_text)
    <|vision_start|> kept tokens of frame 1, frame 2, …              vision segment (append_frame)

A question is prefilled on top — `<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n` — and answered
greedily; then the cache is cropped back, so a question costs its own tokens only and leaves the context unchanged.
Past moments recalled into a question (`generate(recalled=…)`, timeline/recall.py) go between the two, after the
cached live window — their caption lines as text, then each keyframe after its time as text, as an image of its own
(`<|vision_start|>` image tokens `<|vision_end|>`, through the vision tower) — and are cropped back with the question:
the live window's cache is reused, never re-prefilled.

M-RoPE positions (original Qwen2.5-VL convention): a vision segment opened at position s gives a token of the frame
at time t, grid cell (r, c) the ids (s + ⌊(t - t0)·tokens_per_second⌋, s + r, s + c), t0 being the segment's first
frame — exactly what get_rope_index gives a video starting at s. Dropped tokens are simply absent: kept tokens keep
their original ids. Text continues at max(all ids so far) + 1.

Positions stay bounded however long the stream: time gaps between appended frames are capped at `max_gap_s`
(a static camera that drops everything for an hour does not push the ids an hour ahead; regular frames keep exact
spacing), and the memory rebuilds the context from 0 when it compresses old scenes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration

from livesight.model.backend import ContextMark, GenerationResult, Recalled

# a JPEG → its LLM-input tokens [n, D] and grid (gh, gw), through the backend's vision tower
ImageEncoder: TypeAlias = Callable[[bytes], tuple[torch.Tensor, tuple[int, int]]]

PREFILL_CHUNK = 2048  # tokens per forward pass when prefilling many tokens (bounds activation memory)


class QwenContext:
    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        system_prompt: str,
        *,
        tokens_per_second: float,
        max_gap_s: float = 2.0,
        image_encoder: ImageEncoder | None = None,
    ) -> None:
        self._model = model
        self._encode_image = image_encoder
        self._tok = tokenizer
        self._lm = model.model.language_model
        self._embed = model.model.get_input_embeddings()
        self._device = next(model.parameters()).device
        self._dtype = next(model.parameters()).dtype
        self._tps = tokens_per_second
        self._cache = DynamicCache(config=model.config.text_config)
        self._max_pos = -1
        self._seg_start: int | None = None  # first position of the open vision segment
        self._max_gap = max_gap_s
        self._seg_last_pts = 0.0  # stream time of the segment's last frame
        self._seg_time = 0.0  # the segment's virtual time (gaps capped at max_gap_s) at its last frame
        self._last_hidden: torch.Tensor | None = None
        self._eos = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        self.frames = 0
        self.prefilled_tokens = 0  # every token ever prefilled into this cache (tests: nothing is re-prefilled)
        self._hole: tuple[int, int] | None = None  # cache slots a generation as of a mark must not attend to
        self._append_ids(self._ids(f"<|im_start|>system\n{system_prompt}<|im_end|>\n<|im_start|>user\n"))

    # ---- state -------------------------------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        return self._cache.get_seq_length()

    @property
    def max_position(self) -> int:
        return self._max_pos

    @property
    def kv_bytes(self) -> int:
        total = 0
        for layer in self._cache.layers:
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total

    # ---- appending ---------------------------------------------------------------------------------------

    def append_text(self, text: str) -> int:
        """Prefill text (e.g. a caption of an old scene). Closes an open vision segment first."""
        ids = self._ids(text)
        if self._seg_start is not None:
            ids = self._ids("<|vision_end|>") + ids
            self._seg_start = None
        self._append_ids(ids)
        return len(ids)

    def vision_positions(self, t_seconds: float, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Position ids [3, gh*gw] the frame at `t_seconds` gets in the open segment (opening one if needed)."""
        if self._seg_start is None:
            self._append_ids(self._ids("<|vision_start|>"))
            self._seg_start = self._max_pos + 1
            self._seg_last_pts = t_seconds
            self._seg_time = 0.0
        s = self._seg_start
        t_off = int(np.floor(self._virtual_time(t_seconds) * self._tps))
        gh, gw = grid_hw
        rows = torch.arange(gh).view(gh, 1).expand(gh, gw).reshape(-1)
        cols = torch.arange(gw).view(1, gw).expand(gh, gw).reshape(-1)
        return torch.stack([torch.full_like(rows, s + t_off), rows + s, cols + s])

    def append_frame(self, tokens: torch.Tensor, t_seconds: float, grid_hw: tuple[int, int], keep: np.ndarray) -> int:
        """Prefill the kept tokens of one frame ([n, D], row-major over grid_hw) at their original positions."""
        return self.append_frames([(tokens, t_seconds, grid_hw, keep)])

    def append_frames(self, frames: Sequence[tuple[torch.Tensor, float, tuple[int, int], np.ndarray]]) -> int:
        """append_frame for several frames in one prefill (context rebuilds): same positions, fewer forward passes."""
        embeds: list[torch.Tensor] = []
        positions: list[torch.Tensor] = []
        for tokens, t_seconds, grid_hw, keep in frames:
            n = grid_hw[0] * grid_hw[1]
            if tokens.shape[0] != n or keep.shape != (n,):
                raise ValueError(f"frame has {tokens.shape[0]} tokens and {keep.shape} mask for grid {grid_hw}")
            idx = torch.from_numpy(np.flatnonzero(keep))
            if idx.numel() == 0:
                continue
            pos = self.vision_positions(t_seconds, grid_hw)  # opens the segment (prefills its start) before any
            self._seg_time = self._virtual_time(t_seconds)  # pending embeddings: only the first frame can open it
            self._seg_last_pts = max(self._seg_last_pts, t_seconds)
            embeds.append(tokens[idx].to(self._device, self._dtype))
            positions.append(pos[:, idx])
            self.frames += 1
        if not embeds:
            return 0
        self._prefill(torch.cat(embeds), torch.cat(positions, dim=1))
        return sum(int(e.shape[0]) for e in embeds)

    def _virtual_time(self, t_seconds: float) -> float:
        """Segment time of a frame at stream time t: monotonic, each gap capped at max_gap_s."""
        return self._seg_time + min(max(t_seconds - self._seg_last_pts, 0.0), self._max_gap)

    def append_embeddings(self, embeds: torch.Tensor, positions: torch.Tensor) -> None:
        """Low level: prefill [k, D] embeddings at explicit [3, k] positions (e.g. pooled tokens of an old scene)."""
        self._prefill(embeds.to(self._device, self._dtype), positions)

    @torch.inference_mode()
    def last_logits(self) -> torch.Tensor:
        """Logits [V] of the next token after everything in the cache (for tests and diagnostics)."""
        assert self._last_hidden is not None
        return self._model.lm_head(self._last_hidden)[0].float()

    def mark(self) -> ContextMark:
        """This moment of the context: generate(as_of=mark) later answers exactly as generate() would now."""
        return ContextMark(self, self.n_tokens, self._max_pos, self._seg_start is not None)

    # ---- answering ---------------------------------------------------------------------------------------

    @torch.inference_mode()
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
        """Answer greedily from the cache. `as_of` (a mark of this context): answer as the context stood then —
        what was appended since is masked out and the answer's positions continue from the mark's, so the tokens
        are those generate() would have given at the mark (a scene's caption, generated later). `recalled`: past
        moments prefilled after the cache and before the question, cropped back with it."""
        t0 = time.perf_counter()
        n0, max0, last0 = self.n_tokens, self._max_pos, self._last_hidden
        seg_open = self._seg_start is not None
        if as_of is not None and as_of.owner is not self:
            raise ValueError("generate(as_of=…) got a mark of another context")
        if as_of is not None and as_of.n_tokens < n0:
            self._hole = (as_of.n_tokens, n0)
            self._max_pos, seg_open = as_of.max_position, as_of.vision_open
        prefix = "<|vision_end|>" if seg_open else ""
        ids = self._ids(f"{'' if recalled else prefix}{question}<|im_end|>\n<|im_start|>assistant\n")
        generated: list[int] = []
        emitted = ""
        ttft = 0.0
        stopped = False
        recalled_tokens = 0
        try:
            if recalled is not None:
                recalled_tokens = self._append_recalled(prefix, recalled)
            self._append_ids(ids)
            for step in range(max_new_tokens):
                if should_stop():
                    stopped = True
                    break
                logits = self._model.lm_head(self._last_hidden)  # [1, V]
                next_id = int(logits.argmax(-1))
                if step == 0:
                    ttft = (time.perf_counter() - t0) * 1000
                if next_id in self._eos:
                    break
                generated.append(next_id)
                text = self._tok.decode(generated, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # hold back an incomplete multi-byte character
                    delta, emitted = text[len(emitted) :], text
                    if delta and on_text is not None:
                        on_text(delta)
                if step + 1 < max_new_tokens:
                    self._append_ids([next_id])
        finally:  # leave the context exactly as it was
            extra = self.n_tokens - n0
            if extra > 0:
                self._cache.crop(-extra)
            self._max_pos, self._last_hidden, self._hole = max0, last0, None
        final = self._tok.decode(generated, skip_special_tokens=True)
        if on_text is not None and len(final) > len(emitted) and not stopped:
            on_text(final[len(emitted) :])
        return GenerationResult(
            text=final,
            prompt_tokens=len(ids) + recalled_tokens,
            completion_tokens=len(generated),
            ttft_ms=ttft or (time.perf_counter() - t0) * 1000,
            stopped=stopped,
        )

    def _append_recalled(self, prefix: str, recalled: Recalled) -> int:
        """Prefill recalled moments on top of the cache (the caller crops them): the lines, then each image after its
        time, as an image of its own at Qwen2.5-VL's image positions (t = s, h = s + row, w = s + col). Returns the
        tokens added."""
        n0 = self.n_tokens
        self._append_ids(self._ids(f"{prefix}\n{recalled.text}\n"))
        for img in recalled.images:
            if self._encode_image is None:
                raise RuntimeError("this context has no image encoder: it cannot be shown recalled keyframes")
            tokens, (gh, gw) = self._encode_image(img.jpeg)
            self._append_ids(self._ids(f"{img.label}<|vision_start|>"))
            s = self._max_pos + 1
            rows = torch.arange(gh).view(gh, 1).expand(gh, gw).reshape(-1)
            cols = torch.arange(gw).view(1, gw).expand(gh, gw).reshape(-1)
            pos = torch.stack([torch.full_like(rows, s), rows + s, cols + s])
            self._prefill(tokens.to(self._device, self._dtype), pos)
            self._append_ids(self._ids("<|vision_end|>\n"))
        return self.n_tokens - n0

    # ---- internals ---------------------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self._tok(text, add_special_tokens=False).input_ids

    def _append_ids(self, ids: list[int]) -> None:
        if not ids:
            return
        t = torch.tensor(ids, device=self._device)
        pos = torch.arange(len(ids)) + self._max_pos + 1
        self._prefill(self._embed(t), pos.view(1, -1).expand(3, -1))

    @torch.inference_mode()
    def _prefill(self, embeds: torch.Tensor, positions: torch.Tensor) -> None:
        """embeds [k, D], positions [3, k] → KV cache; keeps the last hidden state for the next logits."""
        self.prefilled_tokens += int(embeds.shape[0])
        for a in range(0, embeds.shape[0], PREFILL_CHUNK):
            e = embeds[a : a + PREFILL_CHUNK].unsqueeze(0)
            p = positions[:, a : a + PREFILL_CHUNK].unsqueeze(1).to(self._device)  # [3, 1, k]
            mask = None
            if self._hole is not None:  # [1, cached + k]: 0 over the slots appended after the mark
                mask = torch.ones(1, self.n_tokens + e.shape[1], dtype=torch.long, device=self._device)
                mask[0, self._hole[0] : self._hole[1]] = 0
            out = self._lm(inputs_embeds=e, position_ids=p, cache=self._cache, use_cache=True, attention_mask=mask)
            self._last_hidden = out.last_hidden_state[:, -1]
        self._max_pos = max(self._max_pos, int(positions.max()))
