"""The needle-in-a-stream world: three parked cameras, hours long, with planted events and their exact truth.

    world = plan_world(7200.0, seed=31)          # cameras, events (camera, start, end, what), fades; the truth
    cam = CameraPainter(world, "gate")
    cam.full(pts)    → [336, 588, 3] uint8       # what the camera delivers at stream time pts (the sampled frames)
    cam.small(pts)   → [48, 64, 3] uint8         # what the decoder scales for the cut tap (10 fps), drawn directly

A camera is a still, desaturated background (its own texture), sensor noise (a bank of precomputed noise frames:
cheap), a slow drift of light (±5 % over 40 min). An event is a Thing (palette.py) on screen from `start` to `end`
(5–30 s): a van, a person or a ball crosses the picture (in at one edge at `start`, out at the other at `end`), a
box is put down and a card held up in place, then taken away. Hard cases are planted on purpose and named in
`Event.hard`: the first minute, the last minute, two events 15 s apart on one camera, one event alone in a 40-minute
still stretch (found only through chunking), and one that appears as the picture fades back in from 30 s of black.

Frames are 588x336 (the tiny model's input size for 16:9: prepare does not resize them) and generated, never
encoded as video: the stream runs as fast as the pipeline takes it, on its own clock (pts from 0, wall_time =
EPOCH + pts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from livesight.bench.recall.palette import COLOURS, SHAPES, SIZE, WORDS, Thing, draw

W, H = 588, 336  # the tiny model's input size for 16:9 (model/vision_input.py target_size): no resize
TAP_W, TAP_H = 64, 48  # memory/tap_cuts.py TAP_SIZE
EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()  # the stream starts Monday 2 March 2026, 09:00 UTC
TIMEZONE = "UTC"
NOISE_SIGMA = 2.0
NOISE_BANK = 24
# camera id → the place it looks at (captions and questions name it)
CAMERAS: dict[str, str] = {"gate": "the gate", "yard": "the yard", "door": "the shop door"}


@dataclass(frozen=True)
class Event:
    id: str  # "e07"
    camera: str
    start: float  # stream seconds (pts); wall time = EPOCH + start
    end: float
    thing: Thing
    x: float  # top-left at start (full-frame px)
    y: float
    vx: float  # px per second
    hard: str | None = None  # first minute | last minute | close pair | long still | fade to black

    def at(self, t: float) -> float:
        return self.x + self.vx * (t - self.start)


@dataclass(frozen=True)
class Fade:
    """The picture fades to black over `out_s`, stays black `black_s`, fades back in over `in_s`."""

    camera: str
    start: float
    out_s: float = 3.0
    black_s: float = 30.0
    in_s: float = 3.0

    @property
    def back(self) -> float:  # when the fade-in starts
        return self.start + self.out_s + self.black_s

    def alpha(self, t: float) -> float:
        if t < self.start:
            return 1.0
        if t < self.start + self.out_s:
            return 1.0 - (t - self.start) / self.out_s
        if t < self.back:
            return 0.0
        if t < self.back + self.in_s:
            return (t - self.back) / self.in_s
        return 1.0


@dataclass(frozen=True)
class World:
    duration_s: float
    events: tuple[Event, ...]
    fades: tuple[Fade, ...] = ()
    cameras: tuple[str, ...] = tuple(CAMERAS)
    epoch: float = EPOCH
    seed: int = 31
    long_still: tuple[str, float, float] | None = None  # (camera, start, end) of the planted still stretch
    meta: dict[str, object] = field(default_factory=dict)

    def label_count(self, label: str) -> int:
        return sum(e.thing.label == label for e in self.events)


def all_things() -> list[Thing]:
    return [Thing(s, c) for c in COLOURS for s in SHAPES] + [Thing("card", word=w) for w in WORDS]


CROSSING = ("van", "person", "ball")  # drive, walk or roll across: in at one edge at `start`, out at the other at `end`


def _place(rng: np.random.Generator, thing: Thing, dur: float) -> tuple[float, float, float]:
    """(x at start, y, vx): a crossing thing enters at an edge and leaves at the other one; a box is put down and a
    card held up in place, then taken away."""
    w, h = SIZE[thing.shape]
    y = float(rng.uniform(H * 0.25, H - h - 8))
    if thing.shape in CROSSING:
        vx = (W + w) / dur
        return (-float(w), y, vx) if rng.random() < 0.5 else (float(W), y, -vx)
    return float(rng.uniform(8.0, W - w - 8.0)), y, 0.0


def plan_world(duration_s: float, *, seed: int = 31, events_per_hour: float = 9.0) -> World:
    """Events for each camera (≈ events_per_hour each, 5–30 s long, gaps of 2.5–7 min) plus the hard cases.
    Things are drawn without repeats first (42 distinct: 32 coloured shapes and 10 cards), then repeated."""
    rng = np.random.default_rng(seed)
    d = duration_s
    cams = tuple(CAMERAS)
    planned: list[tuple[str, float, float, str | None]] = []  # camera, start, end, hard
    fades: list[Fade] = []
    reserved: dict[str, list[tuple[float, float]]] = {c: [] for c in cams}

    def hard(cam: str, start: float, dur: float, why: str) -> None:
        planned.append((cam, start, start + dur, why))
        reserved[cam].append((start - 60, start + dur + 60))

    hard(cams[0], 6.0, 14.0, "first minute")
    hard(cams[1], d - 45.0, 25.0, "last minute")
    pair = round(d * 0.3)
    hard(cams[2], pair, 12.0, "close pair")
    hard(cams[2], pair + 27.0, 12.0, "close pair")
    fade = Fade(cams[1], round(d * 0.55))
    fades.append(fade)
    reserved[cams[1]].append((fade.start - 60, fade.back + 60))
    hard(cams[1], fade.back, 15.0, "fade to black")
    long_still = None
    if d >= 3600:
        a = round(d * 0.25)
        long_still = (cams[0], float(a), float(a + 2400))
        hard(cams[0], a + 1230.0, 20.0, "long still")
        reserved[cams[0]].append((a, a + 2400))
    gap_lo, gap_hi = 3600 / events_per_hour * 0.4, 3600 / events_per_hour * 1.05
    for cam in cams:
        t = 60.0 + float(rng.uniform(30, gap_hi))
        while t < d - 120:
            dur = float(rng.uniform(5, 30))
            if all(t + dur < a or t > b for a, b in reserved[cam]):
                planned.append((cam, t, t + dur, None))
            t += dur + float(rng.uniform(gap_lo, gap_hi))
    planned.sort(key=lambda p: (p[1], p[0]))
    pool = all_things()
    rng.shuffle(pool)  # type: ignore[arg-type]
    events = []
    for i, (cam, start, end, why) in enumerate(planned):
        thing = pool[i] if i < len(pool) else pool[int(rng.integers(len(pool)))]
        x, y, vx = _place(rng, thing, end - start)
        events.append(Event(f"e{i:02d}", cam, round(start, 1), round(end, 1), thing, x, y, vx, why))
    return World(d, tuple(events), tuple(fades), cams, EPOCH, seed, long_still)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A desaturated still: a few large blocks of grey-brown, a gradient, softened; [h, w, 3] float32."""
    base = rng.uniform(70, 165, (6, 10, 1)) + rng.uniform(-9, 9, (6, 10, 3))
    big = np.kron(base, np.ones((h // 6 + 1, w // 10 + 1, 1)))[:h, :w]
    ramp = np.linspace(-18, 18, h)[:, None, None]
    fine = np.kron(rng.uniform(-10, 10, (h // 14 + 1, w // 14 + 1, 1)), np.ones((14, 14, 1)))[:h, :w]
    return np.clip(big + ramp + fine, 40, 165).astype(np.float32)  # × 1.05 light + noise stays < 185 (cards)


def _area(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img.astype(np.uint8)).resize((w, h), Image.Resampling.BOX)).astype(np.float32)


class CameraPainter:
    """Renders one camera of the world at any stream time: full frames and the cut tap's small ones."""

    def __init__(self, world: World, camera: str) -> None:
        self.camera = camera
        idx = world.cameras.index(camera)
        rng = np.random.default_rng(world.seed * 100 + idx)
        self.bg = _texture(rng, H, W).astype(np.uint8)
        self.bg_small = _area(self.bg, TAP_W, TAP_H).astype(np.uint8)
        self.noise = rng.normal(0, NOISE_SIGMA, (NOISE_BANK, H, W, 3)).astype(np.float32)
        self.noise_small = rng.normal(0, NOISE_SIGMA / 6, (NOISE_BANK, TAP_H, TAP_W, 3)).astype(np.float32)
        self.phase = idx * 2.1
        self.events = sorted((e for e in world.events if e.camera == camera), key=lambda e: e.start)
        self.fades = [f for f in world.fades if f.camera == camera]
        self._n = 0

    def gain(self, t: float) -> float:
        return 1.0 + 0.05 * math.sin(2 * math.pi * t / 2400.0 + self.phase)

    def visible(self, t: float) -> list[Event]:
        return [e for e in self.events if e.start <= t < e.end]

    def _light(self, t: float) -> float:
        a = 1.0
        for f in self.fades:
            a *= f.alpha(t)
        return self.gain(t) * a

    def full(self, t: float) -> np.ndarray:
        canvas = self.bg.copy()
        for e in self.visible(t):
            draw(canvas, e.thing, e.at(t), e.y)
        self._n += 1
        out = canvas.astype(np.float32)
        out *= self._light(t)
        out += self.noise[(self._n * 7) % NOISE_BANK]
        return np.clip(out, 0, 255).astype(np.uint8)

    def small(self, t: float) -> np.ndarray:
        canvas = self.bg_small.copy()
        for e in self.visible(t):
            draw(canvas, e.thing, e.at(t), e.y, TAP_W / W, TAP_H / H)
        out = canvas.astype(np.float32) * self._light(t)
        out += self.noise_small[int(t * 10) % NOISE_BANK]
        return np.clip(out, 0, 255).astype(np.uint8)
