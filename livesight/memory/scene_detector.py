"""Online (causal) scene-boundary detection for the DTD pipeline (`scenes.detector: dtd`).

It reads what DTD already has for every sampled frame: the prepared frame (the encoder's input, also on frames whose
encoder was skipped) and the DTDStep. From the frame it keeps a 16x16x3 thumbnail (block means: sensor noise
averages out), normalised to zero mean and unit spread, so a change of light (flicker, a flash that washes the
picture out, a fade's dimming) is not a change of content. Distances are mean absolute differences of those
normalised thumbnails: ~0 for the same picture, ~1.1 for two unrelated pictures.

Every frame is evidence, encoder-skipped ones included (a still shot is a long run of near-zero change). Per frame:

- hard cut: the change from the previous frame after the best global shift of a few cells (a pan or a shake
  moves the picture, a cut replaces it) rises above the scene's own recent changes — a robust test (median +
  `threshold` x 1.4826 MAD of the last `window` frames, at least `min_ratio` x the median, at least `cut_change`);
  with fewer than 3 frames of history it must be `min_ratio` x their largest. Or, for footage that moves a lot
  (the picture changes between any two samples, its colours do not): the colour histogram (of the frame normalised
  by its own mean and spread) jumps by `hist_change`, robustly above its own history, and the picture changed too.
  Or, with a cut tap (`cut_tap_fps`, tap_cuts.py): the same robust test fired on the decoder's tiny frames between
  the previous sampled frame and this one and the tap's next frame confirmed it (0.1 s later at 10 fps), and the
  sampled picture changed too — at 2 fps a moving shot changes as much as a cut, 0.1 s apart it does not. Such a
  cut is declared at once, at the tap's pts (the camera samples that frame at once: event-triggered sampling).
- gradual (dissolve, slow fade): the change from the scene as it was `gradual_s` ago (its start, when younger)
  reaches `gradual_change` and is `min_ratio` times what the scene's usual frame-to-frame change would add up to
  over that time — a pan adds up too, a dissolve in a still shot does not.
- flat pictures (black, white, uniform: thumbnail spread < `flat_level` grey levels) carry no content. A picture
  that goes flat (lens covered, lights off) is a boundary at once, at the first flat frame, when it is confirmed:
  by the cut tap (its next frame is flat too) or by the next sampled frame; a flat blip shorter than that is
  ignored. Content within `min_scene_s` after such a boundary belongs to the scene it started when it fades in (a
  fade through black); a hard cut out of black (the content arrives at full contrast: the next frame's spread is
  not higher by more than FADE_IN) after at least BLACK_SCENE_S of black is a boundary of its own, at the first
  content frame (the tap's cut, when it saw one) — the black scene and the one after it are two entries, the black
  one is not where the content's scene starts. A shorter black gap between two shots stays one boundary. Content
  after a longer flat run starts another scene. A flat run in a scene younger than
  `min_scene_s` is a scene of its own once it lasts `min_scene_s`. A stream that starts flat stays no boundary;
  when it was flat for at least 1 s, the first content starts a new scene.
- gaps (`missed` > 0: sampled frames the detector did not see — dropped because the model worker fell behind, or
  failed): two frames seconds apart differ as a cut does (a pan over 4 s changes the picture and its colours as
  much), so across a gap only the cut tap's confirmed cuts and the flat rules can declare a boundary; the gap's
  change stays out of the statistics and the gradual reference restarts. Dropped frames are not cuts. Without a
  cut tap (`cut_tap_fps: 0`), a cut that falls in a gap is not found.
- confirmation (`confirm_frames`: 1): a candidate is a boundary only when the next frame also stays away from the
  old scene, so a one- or two-frame flash (at most one sampled frame) is not a boundary. The event carries the pts
  of the first frame of the new scene and is reported one sampled frame later.
- `min_scene_s`: a candidate sooner than that after the scene's start is not declared and only enters the
  statistics as one more (robustly ignored) value — it does not poison the window.

Without a frame (`update(step)` only), the DTDStep's mean token change is used as `d1` (hard cuts only, no
confirmation; `min_change`, default by DTD mode, replaces `cut_change`): the legacy signal, kept for callers that
have no pixels. Cost per frame: under 1 ms (strided samples of the prepared frame, a 16x16 thumbnail, a 72-bin
histogram, and the shift search only when the plain change is already large).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from livesight.config import SceneConfig
from livesight.memory.pictures import (
    HIST_BINS,
    distance,
    hist_distance,
    histogram,
    moved_distance,
    normalise,
    thumbnail,
)
from livesight.memory.tap_cuts import TapCuts, TapEvent, robust_cut_score, robust_score
from livesight.types import DTDStep, SceneChange

MIN_HISTORY = 3  # frames of history (after the start or a cut) before the robust spread is trusted
FLAT_START_S = 1.0  # a stream starting flat for this long has a boundary at its first content
EPS = 1e-6  # seconds: 5.52 - 3.52 is 1.9999999999999996, and a 2 s scene sampled every 0.5 s is 2 s long
RING = 128  # bound on the thumbnails kept for the gradual test (gradual_s x fps; 5 fps x 10 s = 50)
TAP_EVENTS = 64  # confirmed tap events not yet reached by a sampled frame
BLACK_SCENE_S = 0.5  # a black run at least this long, left by a hard cut, is a scene of its own (shorter: a gap)
FADE_IN = 1.25  # content whose next frame's spread is higher by more than this factor is fading in, not cut in


@dataclass
class _Pending:
    pts: float
    wall_time: float
    score: float
    ref: np.ndarray | None  # the old scene's picture; None: any content confirms (content after a flat scene)
    z: np.ndarray  # the candidate frame's picture (the new scene's first)
    hist: np.ndarray  # the candidate frame's colour histogram
    ref_hist: np.ndarray | None = None  # the old scene's
    gradual: bool = False  # confirmed once the transition has settled (the frames stop changing)
    last: np.ndarray | None = None  # gradual: the previous frame's picture
    cut_in: float | None = None  # a cut out of a young black scene: the candidate's thumbnail spread (grey levels)


class SceneDetector:
    def __init__(
        self,
        cfg: SceneConfig,
        camera: str,
        *,
        start_scene: int = 1,
        dtd_mode: str = "feature",
        tap_cuts: TapCuts | None = None,
    ) -> None:
        self.cfg = cfg
        self.tap_cuts = tap_cuts  # hard cuts judged on the decoder's tiny frames at cut_tap_fps (None: sampled only)
        # the DTD signal's unit depends on the DTD mode: pixels are quieter than a feature space's cosine distance
        self.min_change = cfg.min_change if cfg.min_change is not None else (0.05 if dtd_mode == "pixel" else 0.1)
        self.camera = camera
        self.scene = start_scene  # number of the current scene
        self.last_score = 0.0
        self._scene_start: float | None = None
        self._d1: deque[float] = deque(maxlen=cfg.window)  # frame-to-frame changes of the current scene
        self._m1: deque[float] = deque(maxlen=cfg.window)  # the same after the best small shift (for cuts)
        self._ring: deque[tuple[float, np.ndarray]] = deque(maxlen=RING)  # (pts, picture) of the last gradual_s
        self._prev: np.ndarray | None = None  # the previous content picture
        self._prev_hist: np.ndarray | None = None  # …and its colour histogram
        self._h1: deque[float] = deque(maxlen=cfg.window)  # frame-to-frame histogram changes
        self._hist = np.zeros(3 * HIST_BINS, np.float32)  # the current frame's
        self._spread = 0.0  # the current frame's thumbnail spread (grey levels)
        self._pending: _Pending | None = None
        self._flat_since: float | None = None  # start of the current flat run
        self._flat_scene = False  # the current scene is a flat one (declared, or the stream started flat)
        self._first = True
        self._flat_at_once = False  # the current flat scene was declared when the picture went flat
        self._last_pts: float | None = None  # the previous sampled frame's (the tap cuts between it and this one)
        self._tap_events: deque[TapEvent] = deque(maxlen=TAP_EVENTS)
        self._tap_cut: TapEvent | None = None  # the last confirmed tap cut since the previous sampled frame
        self._tap_flat: TapEvent | None = None  # the first confirmed tap black-out since then
        self.gaps = 0  # frames judged after a gap (sampled frames not seen)

    # ---- public -------------------------------------------------------------------------------------------

    def update(self, step: DTDStep, frame: np.ndarray | None = None, missed: int = 0) -> SceneChange | None:
        """Feed one sampled frame (its DTD step and, preferably, the prepared frame). `missed`: sampled frames since
        the previous call that the detector did not see (a gap). A boundary → SceneChange."""
        if frame is None:
            return self._update_signal(step)
        try:
            return self._update_frame(step, frame, missed)
        finally:
            self._last_pts = step.pts

    def _tap_between(self, upto: float) -> None:
        """The tap's confirmed events up to this frame: the last cut and the first black-out since the last frame."""
        self._tap_cut = self._tap_flat = None
        if self.tap_cuts is None:
            return
        self._tap_events.extend(self.tap_cuts.take_events())
        while self._tap_events and self._tap_events[0].pts <= upto + 1e-6:
            ev = self._tap_events.popleft()
            if self._last_pts is not None and ev.pts <= self._last_pts + 1e-6:
                continue  # before the previous sampled frame: that frame was judged without it
            if ev.kind == "cut":
                self._tap_cut = ev
            elif self._tap_flat is None:
                self._tap_flat = ev

    def _update_frame(self, step: DTDStep, frame: np.ndarray, missed: int) -> SceneChange | None:
        self._tap_between(step.pts)
        gap = missed > 0 and self._last_pts is not None
        self.gaps += gap
        thumb = thumbnail(frame)
        self._spread = float(thumb.std())
        z = normalise(thumb, self.cfg.flat_level)
        if z is not None:
            self._hist = histogram(frame)
        if self._scene_start is None:
            self._scene_start = step.pts
        change = self._resolve(z, step)
        if change is not None:
            self._tap_cut = None  # the boundary just confirmed is the one the tap saw
        if z is None:
            flat_change = self._flat(step)
            return change or flat_change
        if self._first:
            self._first = False
            if self._flat_since is not None and step.pts - self._flat_since >= FLAT_START_S:
                self._flat_scene = True  # the stream started flat: its first content is a new scene
        if self._flat_since is not None:  # content again after a flat run
            self._after_flat(z, step)
            return change
        if self._prev is None:  # first content of a scene (nothing to compare with)
            self._restart(step.pts, z, self._hist)
            return change
        judged = self._judge(z, step, gap)  # after a confirmed boundary too: this frame is the new scene's evidence
        return change or judged

    # ---- frames with pixels -------------------------------------------------------------------------------

    def _resolve(self, z: np.ndarray | None, step: DTDStep) -> SceneChange | None:
        """Confirm or reject the candidate of an earlier frame with this one."""
        p = self._pending
        if p is None:
            return None
        settling = p.gradual and z is not None and p.last is not None and step.pts - p.pts < self.cfg.gradual_s
        if settling and distance(z, p.last) >= 0.1:  # still mid-transition: wait for it to settle (≤ gradual_s)
            p.last = z
            return None
        self._pending = None
        if p.cut_in is not None:  # out of a young black scene: a cut when the content is not still fading in
            if z is None:  # black again: the black scene goes on
                self._flat_scene = self._flat_at_once = True
                self._flat_since = step.pts
                return None
            if self._spread > FADE_IN * p.cut_in:
                assert self._scene_start is not None  # fading in: the content belongs to the black scene
                self._restart(self._scene_start, z, self._hist)
                return None
            confirmed = z is not None
        elif p.ref is None:
            confirmed = z is not None
        else:
            confirmed = (
                z is None
                or distance(z, p.ref) >= 0.5 * self.cfg.cut_change
                or (p.ref_hist is not None and hist_distance(self._hist, p.ref_hist) >= 0.5 * self.cfg.hist_change)
            )
        if not confirmed:  # a flash: forget the frame, as if it had not been
            return None
        self._restart(p.pts, p.z, p.hist)
        if p.gradual and z is not None:
            self._ring.clear()  # the settled picture is the new scene's reference
            self._ring.append((step.pts, z))
        return self._declare(p.pts, p.wall_time, p.score)

    def _judge(self, z: np.ndarray, step: DTDStep, gap: bool = False) -> SceneChange | None:
        cfg = self.cfg
        assert self._prev is not None
        d1 = distance(z, self._prev)
        m1 = moved_distance(z, self._prev) if d1 >= cfg.cut_change else d1
        tap = self._tap_cut
        if tap is not None and not self._young(tap.pts) and moved_distance(z, self._prev) >= 0.5 * cfg.cut_change:
            # the decoder saw the picture replaced and its next frame confirmed it; the sampled picture changed too
            self._pending = None
            self._restart(tap.pts, z, self._hist)
            return self._declare(tap.pts, tap.wall_time, tap.score, tap.confirmed_wall)
        if gap:  # frames were not seen: this change spans them, so it is no evidence (dropped frames are not cuts)
            self._across_gap(z, step)
            return None
        while len(self._ring) > 1 and self._ring[1][0] <= step.pts - cfg.gradual_s + 1e-6:
            self._ring.popleft()
        ref = self._ring[0][1]
        assert self._prev_hist is not None
        h1 = hist_distance(self._hist, self._prev_hist)
        cut = robust_cut_score(m1, self._m1, cfg, MIN_HISTORY)
        if cut is None:
            cut = self._hist_score(h1, m1)
        grad = None if cut is not None else self._gradual_score(distance(z, ref), len(self._ring))
        young = self._young(step.pts)
        if (cut is None and grad is None) or young:
            self._d1.append(d1)
            self._m1.append(m1)
            self._h1.append(h1)
            self._prev, self._prev_hist = z, self._hist
            if young:  # the gradual reference starts once the scene has arrived (a dissolve's tail is not a scene)
                self._ring.clear()
            self._ring.append((step.pts, z))
            return None
        score = cut if cut is not None else grad
        assert score is not None
        if cfg.confirm_frames == 0:
            self._restart(step.pts, z, self._hist)
            return self._declare(step.pts, step.wall_time, score)
        old, old_hist = (self._prev, self._prev_hist) if cut is not None else (ref, None)
        self._pending = _Pending(
            step.pts, step.wall_time, score, old, z, self._hist, old_hist, gradual=cut is None, last=z
        )
        return None  # the candidate frame stays out of the statistics until a later frame confirms it

    def _across_gap(self, z: np.ndarray, step: DTDStep) -> None:
        """A frame after a gap: its change from the previous frame spans frames not seen, so it is no evidence (a
        pan over 4 s changes the picture and its colours as much as a cut). With a cut tap, its confirmed cuts were
        the evidence (above); without one, a cut that falls in a gap is not found."""
        self._prev, self._prev_hist = z, self._hist
        self._ring.clear()
        self._ring.append((step.pts, z))

    def _hist_score(self, h1: float, m1: float) -> float | None:
        """A cut in footage that moves a lot (the picture changes even between frames of one shot, its colours
        do not): the colour histogram jumps, robustly above its own history, and the picture changed too."""
        cfg = self.cfg
        if h1 < cfg.hist_change or m1 < 0.5 * cfg.cut_change or len(self._h1) < MIN_HISTORY:
            return None
        return robust_score(h1, np.fromiter(self._h1, np.float32), cfg)

    def _gradual_score(self, d: float, frames: int) -> float | None:
        """d: change from the scene `frames` frames ago; a boundary when the scene's usual motion cannot explain it."""
        if d < self.cfg.gradual_change or len(self._d1) < 2 or frames < 2:  # not just the last frame
            return None
        usual = float(np.median(np.fromiter(self._d1, np.float32))) * frames
        if d < self.cfg.min_ratio * usual:
            return None
        return d / max(usual, 1e-3)

    def _flat(self, step: DTDStep) -> SceneChange | None:
        tap = self._tap_flat
        first = self._flat_since is None
        if first:  # where the picture went flat: the tap saw it first (0.1 s resolution), else this frame
            self._flat_since = min(tap.pts, step.pts) if tap is not None else step.pts
        confirmed = not first or tap is not None  # two flat sampled frames, or the tap's next frame was flat too
        if not confirmed or self._flat_scene or self._prev is None:  # (a stream that starts flat: no boundary)
            return None
        start = self._flat_since
        assert start is not None
        at_once = not self._young(start)
        if not at_once and step.pts - start < self.cfg.min_scene_s - EPS:
            return None  # a young scene went dark: a scene of its own only once it lasts min_scene_s
        self._flat_scene, self._flat_at_once = True, at_once
        wall = tap.wall_time if tap is not None and first else step.wall_time
        self._restart(start, None, None)
        return self._declare(start, wall, 0.0, tap.confirmed_wall if tap is not None else None)

    def _after_flat(self, z: np.ndarray, step: DTDStep) -> None:
        flat_scene, at_once, before, since = self._flat_scene, self._flat_at_once, self._prev, self._flat_since
        self._flat_since = None
        self._flat_scene = self._flat_at_once = False
        if flat_scene and at_once and self._young(step.pts):  # a short dark spell
            assert self._scene_start is not None and since is not None
            tap = self._tap_cut  # the decoder saw the content arrive (0.1 s resolution): it starts there
            pts, wall = (tap.pts, tap.wall_time) if tap is not None and tap.pts > since else (step.pts, step.wall_time)
            if pts - since >= BLACK_SCENE_S - EPS:  # it lasted: a cut out of it is a boundary (confirmed below)
                self._pending = _Pending(pts, wall, 0.0, None, z, self._hist, cut_in=self._spread)
                return
            self._restart(self._scene_start, z, self._hist)  # a gap through black: the scene it started
            return
        if flat_scene:  # content after a flat scene: always a new scene
            self._pending = _Pending(step.pts, step.wall_time, 0.0, None, z, self._hist)
            return
        if before is None:  # the stream started flat, but only briefly (a decoder's grey first frame)
            self._restart(step.pts, z, self._hist)
            return
        d = distance(z, before)
        young = self._young(step.pts)
        if d >= self.cfg.cut_change and not young:  # through black/white to another picture
            self._pending = _Pending(step.pts, step.wall_time, d, before, z, self._hist, self._prev_hist)
            return
        if d < self.cfg.cut_change:
            self._d1.append(d)
            self._m1.append(d)
        self._prev, self._prev_hist = z, self._hist
        self._ring.clear()  # the faded-in picture is the reference from now on
        self._ring.append((step.pts, z))

    def _young(self, pts: float) -> bool:
        return self._scene_start is not None and pts - self._scene_start < self.cfg.min_scene_s - EPS

    def _restart(self, pts: float, z: np.ndarray | None, hist: np.ndarray | None) -> None:
        """A new scene starts at pts with picture z and histogram hist (None: a flat scene)."""
        self._scene_start = pts
        self._d1.clear()
        self._m1.clear()
        self._h1.clear()
        self._ring.clear()
        self._prev, self._prev_hist = z, hist
        if z is not None:
            self._ring.append((pts, z))

    def _declare(self, pts: float, wall_time: float, score: float, detected: float | None = None) -> SceneChange:
        self.scene += 1
        self.last_score = score
        return SceneChange(self.camera, self.scene, pts, wall_time, round(score, 3), detected)

    # ---- the legacy signal (no pixels) --------------------------------------------------------------------

    def _update_signal(self, step: DTDStep) -> SceneChange | None:
        if step.full:  # kept whole by rule: not evidence of change (a new camera/resolution starts a fresh history)
            if self._scene_start is None:
                self._scene_start = step.pts
            return None
        signal = float(step.change.mean()) if step.change.size else 0.0
        if self._scene_start is None:
            self._scene_start = step.pts
        h = np.fromiter(self._d1, np.float32)
        score = None
        if len(h) >= MIN_HISTORY:
            med = float(np.median(h))
            spread = 1.4826 * float(np.median(np.abs(h - med)))
            if signal - med >= self.min_change and signal >= self.cfg.min_ratio * med:
                s = (signal - med) / max(spread, 1e-3)
                score = s if s >= self.cfg.threshold else None
        if score is None or step.pts - self._scene_start < self.cfg.min_scene_s - EPS:
            self._d1.append(signal)  # skipped frames too: a still shot is evidence of no change
            return None
        self._scene_start = step.pts
        self._d1.clear()
        return self._declare(step.pts, step.wall_time, score)
