"""Differential Token Dropping (TimeChat-Online), per camera, with our changes.

Per sampled frame, in two calls so the daemon can batch the vision encoder across frames and cameras:

    if dtd.precheck(prepared, pts):         # does any 28x28 region differ enough to be worth encoding?
        encoded = backend.encode([prepared])[0]
    step = dtd.decide(camera, pts, wall_time, prepared, encoded or None)   # → DTDStep (keep mask, scores)

Modes (DTDConfig.mode):
- feature:  cosine similarity of the LLM-input token at (h, w) with its reference; drop if > threshold.
- pixel:    mean absolute RGB difference (0–1 scale) of the token's 28x28 region with its reference;
            drop if < threshold.
- relative: drop the `threshold` fraction of least-changed tokens (feature change) — a fixed token rate.
- off:      keep everything (every frame is encoded; pixel_precheck and keyframes do not apply).

Reference (DTDConfig.reference):
- last_kept (ours): the last KEPT token at each (h, w). Slow drift accumulates until it is kept.
- previous (TimeChat-Online): the previous frame's token, kept or not; slow drift can be dropped forever.
  (When the encoder was skipped, the feature reference stays the last encoded frame.)

Encoder skip (DTDConfig.pixel_precheck): when no region differs from the last encoded frame by more than that
(pixel mode: when no region would be kept), the vision encoder is not run and every token of the frame is dropped.
The first frame, a change of grid (resolution) and a due keyframe (keyframe_every_s) are kept whole.

Batches: several frames of one camera may be prechecked before any of them is decided (the worker encodes a
whole batch in one call). Whether a frame must be encoded depends only on pixels and time (never on tokens), so
`precheck` judges each frame against the pixel state the frames prechecked before it will leave (a plan), and
`decide` follows the plan: the keep masks, change values and references are exactly those of one-by-one processing
for any batch composition. A frame encoded that the plan skips is treated as encoder-skipped; a frame decided out of
plan order (or after `reset`) is judged against the current references, and must then have been encoded if needed
(else ValueError).

No encoder (`DTD(cfg, encoder=False)`, pixel mode only): for a backend that runs no vision encoder in this process
(model.backend openai). Decisions are the same as with one (pixel mode never reads tokens); `precheck` then answers
"does this frame carry news" and `decide` takes no encoding. torch is imported only by the feature modes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from livesight.config import DTDConfig
from livesight.model.backend import EncodedFrame
from livesight.types import DTDStep

if TYPE_CHECKING:
    import torch


def region_diff(a: np.ndarray, b: np.ndarray, token_px: int = 28) -> np.ndarray:
    """Mean absolute difference (0–1) of each token_px² region of two [H, W, 3] uint8 frames → [gh*gw] float32.

    Stays in small integer types (|a-b| as max-min in uint8, row sums in uint16): ~7x faster than int16/int64."""
    h, w = a.shape[:2]
    gh, gw = h // token_px, w // token_px
    a, b = a[: gh * token_px, : gw * token_px], b[: gh * token_px, : gw * token_px]
    d = np.maximum(a, b)
    d -= np.minimum(a, b)
    rows = d.reshape(gh * token_px, gw, token_px * 3).sum(axis=2, dtype=np.uint16)  # ≤ 28*3*255 < 2**16
    s = rows.reshape(gh, token_px, gw).sum(axis=1, dtype=np.uint32)
    return (s.reshape(-1) * (1.0 / (token_px * token_px * 3 * 255.0))).astype(np.float32)


def copy_regions(dst: np.ndarray, src: np.ndarray, keep: np.ndarray, grid: tuple[int, int], token_px: int) -> None:
    """dst[region] = src[region] for each kept token_px² region (sparse: slices; a masked copy costs a frame)."""
    gh, gw = grid
    kept = np.flatnonzero(keep)
    if len(kept) > keep.size // 8 and dst.shape[:2] == (gh * token_px, gw * token_px):  # dense: one masked copy
        mask = keep.reshape(gh, 1, gw, 1, 1)
        d = dst[: gh * token_px, : gw * token_px].reshape(gh, token_px, gw, token_px, 3)
        np.copyto(d, src[: gh * token_px, : gw * token_px].reshape(gh, token_px, gw, token_px, 3), where=mask)
        return
    for k in kept:
        r, c = divmod(int(k), gw)
        ys, xs = slice(r * token_px, (r + 1) * token_px), slice(c * token_px, (c + 1) * token_px)
        dst[ys, xs] = src[ys, xs]


@dataclass(frozen=True, slots=True)
class _PixelState:
    """What decides whether a frame must be encoded: pixels and clock only, never tokens."""

    grid: tuple[int, int] | None
    force_full: bool
    last_keyframe: float
    enc_pixels: np.ndarray | None  # pixels of the last encoded frame
    ref_pixels: np.ndarray | None  # pixel mode: the per-region reference; "previous": the previous frame


@dataclass(frozen=True, slots=True)
class _Planned:
    seq: int  # position in the precheck sequence (== frames decided before it, when the plan holds)
    need: bool
    diff: np.ndarray | None  # region diff it was judged on (None when kept whole or no pre-check)
    ms: float = 0.0  # time the pre-check took (reported in the step's dtd_ms)


MAX_PLANNED = 1024  # prechecked, undecided frames (a batch holds a few)


class DTD:
    def __init__(self, cfg: DTDConfig, token_px: int = 28, *, encoder: bool = True) -> None:
        if not encoder and cfg.mode != "pixel":
            raise ValueError(f"DTD without a vision encoder works in pixel mode only (mode is {cfg.mode!r})")
        self.cfg = cfg
        self.token_px = token_px
        self.encoder = encoder  # False: no tokens ever (pixel mode decides from pixels alone)
        self._grid: tuple[int, int] | None = None
        self._ref_pixels: np.ndarray | None = None  # [H, W, 3] uint8, per-region reference (mode dependent)
        self._enc_pixels: np.ndarray | None = None  # pixels of the last encoded frame (for the encoder skip)
        self._ref_tokens: torch.Tensor | None = None  # [n, D]
        self._last_keyframe = -math.inf
        self._pending_diff: np.ndarray | None = None  # the diff decide() judges the current frame on
        self._force_full = True
        # The plan: prechecks not yet decided, by id of the prepared frame (bounded: cleared as they are decided,
        # and on reset), and the pixel state after the last of them.
        self._planned: dict[int, _Planned] = {}
        self._plan_state: _PixelState | None = None
        self._next_seq = 0
        self.frames = 0
        self.encoder_skipped = 0

    # ---- step 1 ------------------------------------------------------------------------------------------

    def precheck(self, prepared: np.ndarray, pts: float) -> bool:
        """True when the vision encoder must run on this (prepared) frame at stream time `pts`.

        Several frames may be prechecked before they are decided (a batch): each is judged against the pixel
        state the previous ones will leave, which needs no tokens, so the answer is the one-by-one answer."""
        t0 = time.perf_counter()
        again = self._planned.get(id(prepared))
        if again is not None and again.seq == self._next_seq - 1:  # the same frame asked twice: same answer
            return again.need
        if len(self._planned) >= MAX_PLANNED:
            raise OverflowError(f"more than {MAX_PLANNED} frames prechecked and not decided")
        if self._next_seq <= self.frames or self._plan_state is None:  # nothing outstanding: start from now
            self._planned.clear()
            self._next_seq = self.frames
            self._plan_state = self._real_state()
        st = self._plan_state
        grid = self._grid_of(prepared)
        need, diff = self._check(st, prepared, grid, pts)
        self._plan_state = self._advance(st, prepared, grid, pts, need, diff)
        ms = (time.perf_counter() - t0) * 1000
        self._planned[id(prepared)] = _Planned(self._next_seq, need, diff, ms)
        self._next_seq += 1
        return need

    def needs_encoding(self, prepared: np.ndarray, pts: float) -> bool:
        """Will decide() need this frame's encoding? (The plan's answer while it holds, else judged against the
        current references: after a frame of the batch failed, or after reset.) Changes nothing."""
        plan = self._planned.get(id(prepared))
        if plan is not None and plan.seq == self.frames:
            return plan.need
        return self._check(self._real_state(), prepared, self._grid_of(prepared), pts)[0]

    def _grid_of(self, prepared: np.ndarray) -> tuple[int, int]:
        return (prepared.shape[0] // self.token_px, prepared.shape[1] // self.token_px)

    def _real_state(self) -> _PixelState:
        return _PixelState(self._grid, self._force_full, self._last_keyframe, self._enc_pixels, self._ref_pixels)

    def _check(
        self, st: _PixelState, prepared: np.ndarray, grid: tuple[int, int], pts: float
    ) -> tuple[bool, np.ndarray | None]:
        """(must the encoder run, the region diff it was judged on) against the pixel state `st`."""
        if self._must_keep_whole(st, grid, pts):
            return True, None
        if self.cfg.mode == "pixel":
            diff = region_diff(prepared, st.ref_pixels, self.token_px)  # type: ignore[arg-type]
            return bool((diff >= self.cfg.threshold).any()), diff
        if self.cfg.pixel_precheck is None:
            return True, None
        diff = region_diff(prepared, st.enc_pixels, self.token_px)  # type: ignore[arg-type]
        return bool((diff > self.cfg.pixel_precheck).any()), diff  # an encoder skip reports it as the change

    def _must_keep_whole(self, st: _PixelState, grid: tuple[int, int], pts: float) -> bool:
        every = self.cfg.keyframe_every_s
        return (
            self.cfg.mode == "off"
            or st.force_full
            or grid != st.grid
            or st.enc_pixels is None
            or (every is not None and pts - st.last_keyframe >= every)
        )

    def _advance(
        self,
        st: _PixelState,
        prepared: np.ndarray,
        grid: tuple[int, int],
        pts: float,
        need: bool,
        diff: np.ndarray | None,
    ) -> _PixelState:
        """The pixel state decide() will leave after this frame (mirrors _update_refs; never mutates `st`)."""
        if self._must_keep_whole(st, grid, pts):
            keyframe = pts if self.cfg.mode != "off" or st.force_full else st.last_keyframe
            return _PixelState(grid, False, keyframe, prepared, prepared)
        if self.cfg.reference == "previous":
            return replace(st, ref_pixels=prepared, enc_pixels=prepared if need else st.enc_pixels)
        if not need:
            return st
        if self.cfg.mode == "pixel":
            assert diff is not None and st.ref_pixels is not None
            ref = st.ref_pixels.copy()
            copy_regions(ref, prepared, diff >= self.cfg.threshold, grid, self.token_px)
            return replace(st, enc_pixels=prepared, ref_pixels=ref)
        return replace(st, enc_pixels=prepared)  # feature modes: ref_pixels follow token keeps, unused here

    # ---- step 2 ------------------------------------------------------------------------------------------

    def decide(
        self, camera: str, pts: float, wall_time: float, prepared: np.ndarray, encoded: EncodedFrame | None
    ) -> DTDStep:
        t0 = time.perf_counter()
        cfg = self.cfg
        grid = self._grid_of(prepared)
        n = grid[0] * grid[1]
        if encoded is not None and encoded.grid_hw != grid:
            raise ValueError(f"encoded grid {encoded.grid_hw} does not match the frame's {grid}")
        plan = self._planned.pop(id(prepared), None)
        precheck_ms = plan.ms if plan is not None else 0.0
        if plan is None or plan.seq != self.frames:  # not prechecked, or out of plan order: judge against now
            self.drop_plan()
            need, diff = self._check(self._real_state(), prepared, grid, pts)
        else:
            need, diff = plan.need, plan.diff
        if encoded is not None and not need:
            encoded = None  # one-by-one, the pre-check would have skipped the encoder: so do we (same result)
        self._pending_diff = diff
        full = self._must_keep_whole(self._real_state(), grid, pts)
        if encoded is None and need and self.encoder:
            raise ValueError("this frame must be encoded (first frame, new grid, keyframe, mode off or changed)")
        ran = need if not self.encoder else encoded is not None  # the (possibly absent) encoder's step ran

        if full:
            keep = np.ones(n, dtype=bool)
            change = np.ones(n, dtype=np.float32)
            if cfg.mode != "off" or self._force_full:
                self._last_keyframe = pts
        elif not ran:  # encoder skipped: nothing changed enough
            keep = np.zeros(n, dtype=bool)
            change = self._pixel_change(prepared)  # vs the reference (pixel) / the last encoded frame (others)
            self.encoder_skipped += 1
        elif cfg.mode == "pixel":
            change = self._pixel_change(prepared)
            keep = change >= cfg.threshold
        else:
            import torch

            assert encoded is not None
            sim = torch.nn.functional.cosine_similarity(
                encoded.tokens.float(),
                self._ref_tokens.float(),
                dim=-1,  # type: ignore[union-attr]
            )
            change = (1.0 - sim).cpu().numpy().astype(np.float32)
            if cfg.mode == "feature":
                keep = (sim <= cfg.threshold).cpu().numpy()
            else:  # relative: keep the (1 - threshold) fraction most changed
                n_keep = n - math.floor(n * cfg.threshold)
                keep = np.zeros(n, dtype=bool)
                if n_keep > 0:
                    keep[np.argpartition(-change, n_keep - 1)[:n_keep]] = True

        self._update_refs(prepared, encoded, keep, grid, full, ran)
        self.frames += 1
        dtd_ms = precheck_ms + (time.perf_counter() - t0) * 1000
        self._pending_diff = None
        return DTDStep(
            camera=camera,
            pts=pts,
            wall_time=wall_time,
            grid_hw=grid,
            keep=keep,
            change=change,
            encoder_skipped=not ran,
            dtd_ms=dtd_ms,
            encode_ms=0.0,
            full=full,
        )

    def _pixel_change(self, prepared: np.ndarray) -> np.ndarray:
        if self._pending_diff is not None:
            return self._pending_diff
        ref = self._ref_pixels if self.cfg.mode == "pixel" else self._enc_pixels
        return region_diff(prepared, ref, self.token_px)  # type: ignore[arg-type]

    def _update_refs(
        self,
        prepared: np.ndarray,
        encoded: EncodedFrame | None,
        keep: np.ndarray,
        grid: tuple[int, int],
        full: bool,
        ran: bool,
    ) -> None:
        self._force_full = False
        if full or self._ref_pixels is None or (self.encoder and self._ref_tokens is None):
            self._grid = grid
            self._ref_pixels = prepared.copy()
            self._enc_pixels = prepared.copy()
            assert encoded is not None or not self.encoder
            self._ref_tokens = encoded.tokens.detach().clone() if encoded is not None else None
            return
        if self.cfg.reference == "previous":  # TimeChat-Online: the previous frame, kept or not
            self._ref_pixels = prepared.copy()
            if ran:
                self._enc_pixels = prepared.copy()
                if encoded is not None:
                    self._ref_tokens = encoded.tokens.detach().clone()
            return
        if not ran:
            return  # nothing encoded: references unchanged (drift keeps accumulating against them)
        self._enc_pixels = prepared.copy()
        if keep.any():
            if encoded is not None and self._ref_tokens is not None:
                import torch

                idx = torch.from_numpy(np.flatnonzero(keep))
                self._ref_tokens[idx] = encoded.tokens[idx].to(self._ref_tokens.dtype)
            copy_regions(self._ref_pixels, prepared, keep, grid, self.token_px)

    def reset(self) -> None:
        """Forget references (e.g. after the camera reconnected, or a failed frame): the next frame is kept whole.
        Prechecks not yet decided are forgotten too (their frames are judged again when decided)."""
        self._force_full = True
        self.drop_plan()

    def drop_plan(self) -> None:
        """Forget prechecks not yet decided (e.g. one of them failed before decide): frames decided from now on are
        judged against the current references (decide() and needs_encoding() then agree)."""
        self._planned.clear()
        self._plan_state = None
        self._next_seq = self.frames
