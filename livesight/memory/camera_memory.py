"""Bounded, compressed memory of one camera, and the KV context that mirrors it.

Segments are scenes. The memory's canonical layout, which the LLM context always mirrors:

    system prompt · captions of compressed scenes (text) · pooled tokens of older scenes · kept tokens of recent
    scenes, frame by frame, at their original M-RoPE positions

Visual tokens in the context never exceed `token_budget` (checked on every append). When an append would pass
the high-water mark (90% of the budget), compression is planned, oldest first, down to the low-water mark (60%):
  1. full  → pooled:  a finished scene's kept tokens are averaged over time per (h, w) cell: ≤ 1 frame of tokens;
  2. pooled → caption: the tokens go, the caption the model wrote when the scene ended stays (text is cheap);
  3. captions beyond `max_captions` are merged pairwise, oldest first, into one line.
The current scene is pooled too when it alone is too big (its older half is folded into its pooled prefix).
Compression rebuilds the context from the new layout (positions restart at 0, so they stay bounded however long
the stream runs). The rebuild runs in chunks through `maintenance_step()` while the old context keeps serving
questions and taking new frames; it is finished synchronously only if the budget would otherwise be passed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from livesight.config import MemoryConfig
from livesight.memory.event_log import EventLog
from livesight.model.backend import Backend, ContextMark, GenerationResult, LLMContext, Recalled, RecallRoom
from livesight.types import DTDStep, SceneChange

log = logging.getLogger(__name__)

HIGH_WATER = 0.9
LOW_WATER = 0.6
CAPTION_PROMPT = "Describe what happened in the last scene in one short sentence."
CAPTION_PROMPT_MANY = "Describe what happened in the last {n} scenes in one short sentence."
CAPTION_TOKENS = 24
CAPTION_CHARS = 240
REBUILD_FRAMES = 16  # frames prefilled per rebuild step (one forward pass; bounds the step's time)
MARKS = 8  # the context as it was before each of the last MARKS frames (a change may be reported a frame late)


@dataclass
class FrameEntry:
    pts: float
    grid_hw: tuple[int, int]
    idx: torch.Tensor  # [k] kept cell indices, row-major over grid_hw
    tokens: torch.Tensor  # [k, D]

    @property
    def k(self) -> int:
        return int(self.idx.numel())

    def keep_mask(self) -> np.ndarray:
        m = np.zeros(self.grid_hw[0] * self.grid_hw[1], dtype=bool)
        m[self.idx.numpy()] = True
        return m

    def full_tokens(self) -> torch.Tensor:
        """[gh*gw, D] with the kept rows filled (the others are never read)."""
        out = torch.zeros(self.grid_hw[0] * self.grid_hw[1], self.tokens.shape[1], dtype=self.tokens.dtype)
        out[self.idx] = self.tokens
        return out


@dataclass
class Segment:
    scene: int
    start_pts: float
    end_pts: float
    start_wall: float
    stage: Literal["full", "pooled", "caption"] = "full"
    pooled: FrameEntry | None = None  # stage pooled (or the folded prefix of the current scene)
    frames: list[FrameEntry] = field(default_factory=list)
    caption: str | None = None
    caption_pending: bool = False  # closed, its caption not generated yet (the model worker schedules it)
    end_mark: ContextMark | None = None  # the context at the scene's end: its caption is generated as of then

    @property
    def visual_tokens(self) -> int:
        if self.stage == "caption":
            return 0
        return (self.pooled.k if self.pooled else 0) + sum(f.k for f in self.frames)

    def caption_line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.start_wall))
        text = (self.caption or "(no caption)").strip().replace("\n", " ")[:CAPTION_CHARS]
        return f"[scene {self.scene}, {when}, {self.end_pts - self.start_pts:.0f}s] {text}\n"


def pool_entries(entries: list[FrameEntry]) -> FrameEntry | None:
    """Average each (h, w) cell over the entries that kept it: ≤ one frame of tokens, at the first entry's time."""
    if not entries:
        return None
    grid = entries[0].grid_hw
    same = [e for e in entries if e.grid_hw == grid]
    n, d = grid[0] * grid[1], same[0].tokens.shape[1]
    total = torch.zeros(n, d, dtype=torch.float32)
    count = torch.zeros(n, dtype=torch.float32)
    for e in same:
        total.index_add_(0, e.idx, e.tokens.float())
        count.index_add_(0, e.idx, torch.ones(e.k))
    idx = torch.nonzero(count > 0).flatten()
    tokens = (total[idx] / count[idx, None]).to(same[0].tokens.dtype)
    return FrameEntry(pts=same[0].pts, grid_hw=grid, idx=idx, tokens=tokens)


class CameraMemory:
    def __init__(
        self,
        camera: str,
        backend: Backend,
        cfg: MemoryConfig,
        event_log: EventLog | None = None,
        *,
        start_scene: int = 1,
        caption_tokens: int = CAPTION_TOKENS,
    ) -> None:
        self.camera = camera
        self.backend = backend
        self.cfg = cfg
        self.budget = cfg.token_budget
        self.event_log = event_log
        self.caption_tokens = caption_tokens
        self.ctx: LLMContext = backend.new_context()
        self.ctx_visual = 0  # visual tokens in self.ctx
        self.segments: list[Segment] = [Segment(start_scene, 0.0, 0.0, time.time())]
        self._started = False
        self._rebuild: Iterator[None] | None = None
        self.compressions: list[dict[str, Any]] = []  # log of compression steps (bounded)
        self.rebuilds = 0
        self.rebuild_ms = 0.0
        self.forced_rebuilds = 0
        # (pts, the context before the frame at pts, its index in the current scene's frames), last MARKS frames
        self._marks: deque[tuple[float, ContextMark | None, int]] = deque(maxlen=MARKS)
        self.captions_done = 0  # caption generations
        self.captions_merged = 0  # scenes captioned by another scene's generation (their captions waited)
        self.captions_late = 0  # captions generated without their scene's end mark (the context was rebuilt)

    # ---- frames and scenes (model worker thread) ---------------------------------------------------------

    @property
    def current(self) -> Segment:
        return self.segments[-1]

    @property
    def visual_tokens(self) -> int:
        return sum(s.visual_tokens for s in self.segments)

    def add_step(self, step: DTDStep, tokens: torch.Tensor | None, prepared: np.ndarray | None = None) -> None:
        seg = self.current
        if not self._started:
            seg.start_pts = seg.end_pts = step.pts
            seg.start_wall = step.wall_time
            self._started = True
        seg.end_pts = max(seg.end_pts, step.pts)
        if tokens is None or step.kept == 0:
            return
        self._marks.append((step.pts, self._mark(), len(seg.frames)))
        if step.kept > self.budget:
            raise ValueError(f"a frame of {step.kept} tokens cannot fit a budget of {self.budget}")
        idx = torch.from_numpy(np.flatnonzero(step.keep))
        entry = FrameEntry(step.pts, step.grid_hw, idx, tokens[idx].detach().cpu())
        if self.visual_tokens + entry.k > HIGH_WATER * self.budget:
            self._compress(entry.k)
            self._marks.clear()  # frames moved into the pooled prefix: the indices no longer hold
            self._marks.append((step.pts, self._mark(), len(seg.frames)))
        if self.ctx_visual + entry.k > self.budget:  # the rebuild must land before this frame can
            self.forced_rebuilds += 1
            self._finish_rebuild()
            self._marks.clear()
            self._marks.append((step.pts, self._mark(), len(seg.frames)))
        seg.frames.append(entry)
        self.ctx_visual += self.ctx.append_frame(tokens, step.pts, step.grid_hw, step.keep)
        assert self.ctx_visual <= self.budget

    def on_scene_change(self, change: SceneChange) -> bool:
        """Close the current scene at change.pts and start the next. Frames of the new scene already appended (a
        change reported a frame after its first frame) move to the new scene, and the closed scene's end is the
        context as it was before them. True when the closed scene wants a caption (`caption_pending()`, scheduled
        by the model worker: it is generated as of the scene's end, so later frames do not change it)."""
        seg = self.current
        split = next(((m, i) for pts, m, i in self._marks if pts >= change.pts - 1e-6), None)
        moved: list[FrameEntry] = []
        if split is not None and split[1] <= len(seg.frames):
            end_mark, i = split
            moved, seg.frames = seg.frames[i:], seg.frames[:i]
        else:
            end_mark = self._mark()
        self._marks.clear()
        wants = self._started and seg.visual_tokens > 0
        if wants:
            seg.caption_pending = True
            seg.end_mark = end_mark
        seg.end_pts = max(seg.start_pts, change.pts)
        new = Segment(change.scene, change.pts, change.pts, change.wall_time, frames=moved)
        new.end_pts = max([change.pts, *(f.pts for f in moved)])
        self.segments.append(new)
        return wants

    def caption_pending(self) -> int:
        """Caption the closed scenes still waiting for one (blocking: one generation). When several wait (the
        worker had more urgent work), one caption as of the last one's end covers them all (merged, counted).
        Returns the number of scenes captioned."""
        segs = [s for s in self.segments[:-1] if s.caption_pending]
        if not segs:
            return 0
        mark = segs[-1].end_mark
        if mark is not None and mark.owner is not self.ctx:
            mark = None
        prompt = CAPTION_PROMPT if len(segs) == 1 else CAPTION_PROMPT_MANY.format(n=len(segs))
        if mark is not None and mark.n_tokens < self.ctx.n_tokens:
            r = self.ctx.generate(prompt, max_new_tokens=self.caption_tokens, as_of=mark)
        else:
            r = self.ctx.generate(prompt, max_new_tokens=self.caption_tokens)
        text = r.text.strip()[:CAPTION_CHARS]
        for seg in segs:
            seg.caption = f"{seg.caption} / {text}"[-CAPTION_CHARS:] if seg.caption else text  # (merged ones)
            seg.caption_pending, seg.end_mark = False, None
            if self.event_log is not None:
                self.event_log.caption(self.camera, seg.scene, text)
        self.captions_done += 1
        self.captions_merged += len(segs) - 1
        self.captions_late += mark is None
        return len(segs)

    def _mark(self) -> ContextMark | None:
        mark = getattr(self.ctx, "mark", None)  # optional in the backend contract
        return mark() if mark is not None else None

    def answer(
        self,
        question: str,
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_text: Callable[[str], None] | None = None,
        recalled: Recalled | None = None,
    ) -> GenerationResult:
        """Answer from the live context; `recalled` past moments go after it and before the question (rolled back
        with it: the live context's cache is reused as is)."""
        extra = {"recalled": recalled} if recalled is not None else {}
        return self.ctx.generate(
            question, max_new_tokens=max_new_tokens, should_stop=should_stop, on_text=on_text, **extra
        )

    def recall_room(self) -> RecallRoom:
        """Where the live window starts and the tokens a recall may add to a question (the token budget's room left
        by the live window). Read from the event loop: a consistent-enough moment (a copy of the segment list)."""
        segments = list(self.segments)
        live = next((s.start_wall for s in segments if s.stage != "caption"), segments[-1].start_wall)
        gh, gw = self.backend.info.grid_hw
        return RecallRoom(live, max(0, self.budget - self.visual_tokens), gh * gw + 2)

    def maintenance_step(self) -> bool:
        """Advance a pending context rebuild by one chunk. True when there was work."""
        if self._rebuild is None:
            return False
        t0 = time.perf_counter()
        try:
            next(self._rebuild)
        except StopIteration:
            self._rebuild = None
        self.rebuild_ms += (time.perf_counter() - t0) * 1000
        return True

    # ---- compression -------------------------------------------------------------------------------------

    def _log(self, action: str, seg: Segment, before: int) -> None:
        rec = {"action": action, "scene": seg.scene, "tokens_before": before, "tokens_after": seg.visual_tokens}
        self.compressions.append(rec)
        del self.compressions[:-200]
        log.info(
            "memory %s: %s scene %d (%d → %d visual tokens)", self.camera, action, seg.scene, before, seg.visual_tokens
        )

    def _compress(self, incoming: int) -> None:
        target = LOW_WATER * self.budget - incoming
        for stage_from, action in (("full", "pool"), ("pooled", "caption")):
            for seg in self.segments[:-1]:
                if self.visual_tokens <= target:
                    break
                if seg.stage != stage_from or (action == "caption" and seg.caption_pending):
                    continue  # a scene whose caption is still to come keeps its pooled tokens (see below)
                before = seg.visual_tokens
                if action == "pool":
                    seg.pooled = pool_entries(([seg.pooled] if seg.pooled else []) + seg.frames)
                    seg.frames = []
                    seg.stage = "pooled"
                else:
                    seg.pooled = None
                    seg.frames = []
                    seg.stage = "caption"
                self._log(action, seg, before)
        cur = self.current
        while self.visual_tokens > target and len(cur.frames) > 1:
            before = cur.visual_tokens
            half = len(cur.frames) // 2
            cur.pooled = pool_entries(([cur.pooled] if cur.pooled else []) + cur.frames[:half])
            cur.frames = cur.frames[half:]
            self._log("pool-current", cur, before)
            if cur.visual_tokens == before:
                break
        for seg in self.segments[:-1]:  # scenes waiting for their caption give up their pooled tokens last
            if self.visual_tokens + incoming <= self.budget:
                break
            if seg.stage != "caption":
                before = seg.visual_tokens
                seg.pooled, seg.frames, seg.stage = None, [], "caption"
                self._log("caption-before-captioned", seg, before)
        while self.visual_tokens + incoming > self.budget and (cur.pooled is not None or cur.frames):
            before = cur.visual_tokens  # last resort (tiny budgets): evict the current scene's oldest tokens
            if cur.pooled is not None:
                cur.pooled = None
            else:
                cur.frames.pop(0)
            self._log("evict-current", cur, before)
        self._merge_captions()
        self._rebuild = self._rebuild_steps()

    def _merge_captions(self) -> None:
        # captions still to come are not merged away; past 2 x max_captions (captions that never come: a failing
        # model) they are too, so the number of scenes stays bounded whatever happens
        for limit, waiting_too in ((self.cfg.max_captions, False), (2 * self.cfg.max_captions, True)):
            captioned = [
                s for s in self.segments[:-1] if s.stage == "caption" and (waiting_too or not s.caption_pending)
            ]
            while len(captioned) > limit:
                a, b = captioned[0], captioned[1]
                b.caption = f"{a.caption or ''} / {b.caption or ''}"[-CAPTION_CHARS:]
                b.start_pts, b.start_wall = a.start_pts, a.start_wall
                b.caption_pending = a.caption_pending or b.caption_pending
                self.segments.remove(a)
                captioned.pop(0)
                self.compressions.append({"action": "merge-captions", "scene": b.scene})

    # ---- context (re)building ----------------------------------------------------------------------------

    def _rebuild_steps(self) -> Iterator[None]:
        """Build a fresh context from the canonical layout, one chunk per step; swap it in at the end."""
        t0 = time.perf_counter()
        ctx = self.backend.new_context()
        visual = 0
        ends: list[tuple[Segment, ContextMark | None]] = []  # each scene's end in the new context
        text = "".join(s.caption_line() for s in self.segments if s.stage == "caption")
        if text:
            ctx.append_text(text)
            yield
        j = 0
        while j < len(self.segments):  # scenes started meanwhile are included
            seg = self.segments[j]
            j += 1
            if seg.stage == "caption":
                continue
            if seg.pooled is not None:
                p = seg.pooled
                visual += ctx.append_frame(p.full_tokens(), p.pts, p.grid_hw, p.keep_mask())
                yield
            i = 0
            while i < len(seg.frames):  # frames appended meanwhile are included
                batch = seg.frames[i : i + REBUILD_FRAMES]
                visual += ctx.append_frames([(f.full_tokens(), f.pts, f.grid_hw, f.keep_mask()) for f in batch])
                i += len(batch)
                yield
            mark = getattr(ctx, "mark", None)
            ends.append((seg, mark() if mark is not None else None))
        self.ctx, self.ctx_visual = ctx, visual
        self._marks.clear()
        for seg, end in ends:  # scenes waiting for their caption: generated as of their end in the new context
            if seg.caption_pending:
                seg.end_mark = end
        self.rebuilds += 1
        log.debug(
            "memory %s: context rebuilt in %.0f ms (%d tokens)",
            self.camera,
            (time.perf_counter() - t0) * 1000,
            ctx.n_tokens,
        )

    def _finish_rebuild(self) -> None:
        while self._rebuild is not None:
            self.maintenance_step()

    def rebuild_now(self) -> None:
        """Rebuild the context from the current memory synchronously (tests; recovery)."""
        self._rebuild = self._rebuild_steps()
        self._finish_rebuild()

    def prompt_captions(self) -> list[str]:
        return [s.caption_line() for s in self.segments if s.stage == "caption"]

    def stats(self) -> dict[str, Any]:
        stages = {"full": 0, "pooled": 0, "caption": 0}
        for s in self.segments:
            stages[s.stage] += 1
        return {
            "scene": self.current.scene,
            "memory_tokens": self.visual_tokens,
            "token_budget": self.budget,
            "kv_tokens": self.ctx.n_tokens,
            "kv_bytes": self.ctx.kv_bytes,
            "max_position": self.ctx.max_position,
            "scenes_full": stages["full"],
            "scenes_pooled": stages["pooled"],
            "scenes_captioned": stages["caption"],
            "compressions": len(self.compressions),
            "rebuilds": self.rebuilds,
            "rebuilding": self._rebuild is not None,
            "captions_done": self.captions_done,
            "captions_merged": self.captions_merged,
            "captions_late": self.captions_late,
            "captions_pending": sum(1 for s in self.segments[:-1] if s.caption_pending),
        }
