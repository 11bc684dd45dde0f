"""The hard scene suite: generated clips with exact truth, written as real video files (H.264 in MP4, via PyAV).

Every clip is a timeline of shots joined by transitions; the truth is the list of transitions (a hard cut is a span
of zero length at the first frame of the new shot; a fade or dissolve spans from its first to its last mixed frame).
What must NOT be a boundary is in the shots themselves: sensor noise, a 1–2 frame flash, light flicker, a fast pan,
a slow drift, a person-sized object entering a parked scene.

Policy the truth encodes (docs/memory.md): a flat picture (black, white, uniform) is a scene of its own only when
it lasts; a stream that starts on black and then shows content has a boundary where the content appears; a fade
through black/white between two shots is ONE boundary; a fade out to black that stays black is one boundary; a hard
cut out of a black that lasted at least 0.5 s is a boundary of its own (none of the suite's clips has one).

    clips = write_suite(Path("/tmp/suite"))           # → list[SuiteClip] (path + truth), sidecar JSON beside each
    truth = load_truth(clips[0].path)                 # from the sidecar `<clip>.truth.json`

Photos come from Debian opencv-doc (/usr/share/doc/opencv-doc/examples/data); without them, generated textures.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from livesight.bench.clips import OPENCV_DATA

W, H = 480, 272  # 16:9-ish, even (yuv420p)
PHOTOS = (
    "building.jpg",
    "fruits.jpg",
    "baboon.jpg",
    "home.jpg",
    "messi5.jpg",
    "butterfly.jpg",
    "board.jpg",
    "aero1.jpg",
    "orange.jpg",
    "starry_night.jpg",
    "graf1.png",
)

Shot = Callable[[float], np.ndarray]  # local time (s) → [H, W, 3] float32 0–255


@dataclass(frozen=True)
class Transition:
    """A scene boundary in the truth: hard cut (start == end) or gradual (fade/dissolve) from start to end, in s."""

    kind: str  # cut | dissolve | fade_black | fade_white | black_gap
    start: float
    end: float


@dataclass
class SuiteClip:
    name: str
    path: Path
    duration: float
    transitions: list[Transition]
    hard: list[str] = field(default_factory=list)  # what makes it hard (not boundaries: flash, pan, …)
    vfr: bool = False

    def truth_json(self) -> dict:
        return {
            "name": self.name,
            "duration": self.duration,
            "vfr": self.vfr,
            "hard": self.hard,
            "transitions": [asdict(t) for t in self.transitions],
            "policy": __doc__.split("Policy the truth encodes")[1].split("\n\n")[0].strip(),
        }


def load_truth(video: Path) -> dict:
    return json.loads(video.with_suffix(".truth.json").read_text())


# ---- pictures --------------------------------------------------------------------------------------------------


def _texture(seed: int, w: int, h: int) -> np.ndarray:
    """A smooth random picture (when opencv-doc is missing): a few octaves of upsampled noise, coloured."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for octave in (4, 8, 16, 32):
        small = rng.random((octave, octave * w // h + 1, 3)).astype(np.float32)
        ys = np.linspace(0, small.shape[0] - 1, h).astype(int)
        xs = np.linspace(0, small.shape[1] - 1, w).astype(int)
        out += small[ys][:, xs] * (255 / 4)
    return out


def photo(index: int, w: int = W, h: int = H) -> np.ndarray:
    """Photo `index` (cycling through PHOTOS) resized to cover w×h and centre-cropped: float32 [h, w, 3]."""
    from PIL import Image

    names = [n for n in PHOTOS if (OPENCV_DATA / n).is_file()]
    if not names:
        return _texture(index, w, h)
    with Image.open(OPENCV_DATA / names[index % len(names)]) as im:
        im = im.convert("RGB")
        scale = max(w / im.width, h / im.height)
        im = im.resize((max(w, math.ceil(im.width * scale)), max(h, math.ceil(im.height * scale))), Image.BILINEAR)
        x0, y0 = (im.width - w) // 2, (im.height - h) // 2
        return np.asarray(im.crop((x0, y0, x0 + w, y0 + h)), dtype=np.float32).copy()


# ---- shots (local time → picture) -------------------------------------------------------------------------------


def still(index: int) -> Shot:
    p = photo(index)
    return lambda t: p


def flat(level: float) -> Shot:
    p = np.full((H, W, 3), level, np.float32)
    return lambda t: p


def pan(index: int, px_per_s: float) -> Shot:
    """A pan across a photo 3× wider than the frame (bounces at the ends)."""
    big = photo(index, 3 * W, H)
    span = 2 * W

    def f(t: float) -> np.ndarray:
        x = int(px_per_s * t) % (2 * span)
        x = x if x <= span else 2 * span - x
        return big[:, x : x + W]

    return f


def drift(index: int) -> Shot:
    """Slow drift: the view creeps 3 px/s and the light rises 2 grey levels per second (a sunrise)."""
    big = photo(index, W + 120, H + 60)

    def f(t: float) -> np.ndarray:
        x, y = int(3 * t) % 120, int(1.5 * t) % 60
        return big[y : y + H, x : x + W] * (0.85 + 0.008 * t) + 2 * t

    return f


def moving_object(base: Shot, enter_s: float, speed_px_s: float = 110.0, stop_x: float | None = None) -> Shot:
    """A person-sized figure (about 20% of the frame's width, 70% of its height) walks in from the left at enter_s,
    stops at stop_x (if given) for a while, then walks on and out."""
    bw, bh = W // 5, int(H * 0.7)
    yy, xx = np.mgrid[0:bh, 0:bw]
    body = ((xx - bw / 2) / (bw / 2)) ** 2 + ((yy - bh * 0.62) / (bh * 0.4)) ** 2 <= 1
    head = ((xx - bw / 2) / (bw * 0.22)) ** 2 + ((yy - bh * 0.13) / (bh * 0.12)) ** 2 <= 1
    mask = (body | head)[..., None]
    colour = np.where(yy[..., None] < bh * 0.25, (205, 160, 130), (40, 60, 150)).astype(np.float32)
    top = H - bh - 6

    def f(t: float) -> np.ndarray:
        img = base(t)
        dt = t - enter_s
        if dt < 0:
            return img
        x = -bw + speed_px_s * dt
        if stop_x is not None and x > stop_x:
            x = max(stop_x, stop_x + speed_px_s * (dt - (stop_x + bw) / speed_px_s - 3.0))
        x = int(x)
        if x >= W:
            return img
        img = img.copy()
        x0, x1 = max(0, x), min(W, x + bw)
        sub = img[top : top + bh, x0:x1]
        m = mask[:, x0 - x : x1 - x]
        np.copyto(sub, colour[:, x0 - x : x1 - x], where=m)
        return img

    return f


def flicker(base: Shot, amplitude: float = 0.08, seed: int = 0) -> Shot:
    """Light flicker: the whole picture's gain wobbles by ±amplitude (mains flicker on a cheap sensor)."""
    rng = np.random.default_rng(seed)
    gains = 1 + amplitude * (2 * rng.random(10_000) - 1)

    def f(t: float) -> np.ndarray:
        return base(t) * gains[int(t * 25) % len(gains)]

    return f


def flash(base: Shot, at_s: Sequence[float], frames: Sequence[int], fps: float) -> Shot:
    """1–2 source frames of near-white (a camera flash) at each time in at_s, then back to the same picture."""

    def f(t: float) -> np.ndarray:
        for a, n in zip(at_s, frames, strict=True):
            if a <= t < a + n / fps - 1e-6:
                return base(t) * 0.3 + 200
        return base(t)

    return f


def shake(base: Shot, amplitude_px: int = 6, seed: int = 0) -> Shot:
    """A hand-held camera: the picture jitters by up to amplitude_px each source frame."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(-amplitude_px, amplitude_px + 1, (10_000, 2))

    def f(t: float) -> np.ndarray:
        dy, dx = offsets[int(t * 25) % len(offsets)]
        return np.roll(base(t), (int(dy), int(dx)), axis=(0, 1))

    return f


# ---- timeline ---------------------------------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    shots: list[tuple[Shot, float]]  # (shot, seconds of its own before the next transition starts)
    joins: list[tuple[str, float]]  # between consecutive shots: (kind, seconds); cut has 0 s
    hard: list[str] = field(default_factory=list)
    noise: float = 2.0  # sensor noise, grey levels (std)
    fps: float = 25.0
    vfr: bool = False
    boundary: list[bool] | None = None  # per join: is it a boundary in the truth (default all)


def render(spec: Spec) -> tuple[list[tuple[float, np.ndarray]], list[Transition], float]:
    """Frames (pts, uint8 RGB) and the truth."""
    starts, t = [], 0.0
    spans = []
    for i, (_, dur) in enumerate(spec.shots):
        starts.append(t)
        t += dur
        if i < len(spec.joins):
            kind, d = spec.joins[i]
            spans.append((kind, t, t + d))
            t += d
    duration = t
    truth = [
        Transition(k, round(a, 3), round(b, 3))
        for j, (k, a, b) in enumerate(spans)
        if spec.boundary is None or spec.boundary[j]
    ]
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    times = _frame_times(duration, spec.fps, spec.vfr, rng)
    frames = []
    for ft in times:
        frames.append((ft, _frame_at(spec, starts, spans, ft, rng)))
    return frames, truth, duration


def _frame_times(duration: float, fps: float, vfr: bool, rng: np.random.Generator) -> list[float]:
    if not vfr:
        return [i / fps for i in range(int(duration * fps))]
    out, t = [], 0.0
    while t < duration:
        out.append(round(t, 3))
        t += float(rng.choice([0.02, 0.033, 0.04, 0.05, 0.08]))  # 12.5–50 fps, as a phone records
    return out


def _frame_at(spec: Spec, starts: list[float], spans: list[tuple[str, float, float]], t: float, rng) -> np.ndarray:
    img: np.ndarray | None = None
    for j, (kind, a, b) in enumerate(spans):
        if a <= t < b:  # inside a transition between shot j and j+1
            x = (t - a) / (b - a)
            prev = spec.shots[j][0](t - starts[j])
            nxt = spec.shots[j + 1][0](max(0.0, t - starts[j + 1]))
            if kind == "dissolve":
                img = prev * (1 - x) + nxt * x
            elif kind in ("fade_black", "fade_white", "black_gap"):
                level = 255.0 if kind == "fade_white" else 0.0
                if kind == "black_gap":
                    img = np.full_like(prev, level)
                elif x < 0.5:
                    img = prev * (1 - 2 * x) + level * 2 * x
                else:
                    img = nxt * (2 * x - 1) + level * (2 - 2 * x)
            break
    if img is None:
        i = max(k for k, s in enumerate(starts) if s <= t + 1e-9)
        img = spec.shots[i][0](t - starts[i])
    if spec.noise:
        img = img + rng.normal(0, spec.noise, (H, W, 1)).astype(np.float32)  # luma noise
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[tuple[float, np.ndarray]], fps: float) -> None:
    """H.264 MP4 with exact timestamps (1 ms time base, so VFR frames keep their times)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=round(fps))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)  # frame times in ms reach the encoder unrounded (VFR)
        s.options = {"crf": "18", "preset": "veryfast", "g": "50", "bf": "0"}
        for t, rgb in frames:
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = round(t * 1000)
            f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


# ---- the suite --------------------------------------------------------------------------------------------------


def specs(quick: bool = False) -> list[Spec]:
    fps = 25.0
    out = [
        Spec(  # the first row: parked-camera stills, cuts at 6/12/24 s, a fade through black at 18 s
            "parked-stills",
            [(still(0), 6), (still(1), 6), (still(2), 5.5), (still(3), 5.5), (still(4), 6)],
            [("cut", 0), ("cut", 0), ("fade_black", 1.0), ("cut", 0)],
            hard=["static shots with sensor noise (encoder skipped)", "fade through black"],
        ),
        Spec(  # the second row: film stills with black gaps, fade-in from black, a dissolve, fade-out
            "film-stills-black-gaps",
            [(flat(0), 1.0), (still(5), 4.0), (still(6), 3.5), (still(7), 2.5), (still(8), 3.6), (flat(0), 3.0)],
            [("fade_black", 1.0), ("cut", 0), ("dissolve", 1.0), ("black_gap", 0.25), ("fade_black", 1.2)],
            hard=["starts on black", "fade in", "dissolve 1.0 s", "black gap", "fade out to black"],
        ),
        Spec(
            "fades-and-dissolves",
            [(still(9), 5), (still(10), 5), (still(11), 5), (still(1), 4), (still(3), 5)],
            [("fade_white", 1.0), ("dissolve", 1.5), ("dissolve", 0.5), ("fade_black", 1.4)],
            hard=["fade through white", "dissolve 1.5 s", "dissolve 0.5 s", "fade through black"],
        ),
        Spec(
            "flash-and-flicker",
            [(flash(still(2), (3.0, 6.5), (1, 2), fps), 9.0), (flicker(still(4)), 9.0), (still(6), 6)],
            [("cut", 0), ("cut", 0)],
            hard=["1-frame flash at 3 s", "2-frame flash at 6.5 s", "light flicker ±8% 9–18 s"],
        ),
        Spec(
            "pan-and-drift",
            [(pan(0, 260.0), 8.0), (drift(3), 10.0), (pan(5, 90.0), 7.0)],
            [("cut", 0), ("cut", 0)],
            hard=["fast pan 260 px/s", "slow drift + light rising", "pan 90 px/s"],
        ),
        Spec(
            "object-enters-parked",
            [(moving_object(still(7), 2.0, stop_x=W * 0.4), 13.0), (moving_object(still(3), 3.0, 160.0), 9.0)],
            [("cut", 0)],
            hard=["person-sized figure walks in, stands 3 s, walks out", "another walks across faster"],
        ),
        Spec(
            "starts-on-black",
            [(flat(0), 2.5), (still(8), 5.0), (still(10), 5.0)],
            [("cut", 0), ("cut", 0)],
            hard=["2.5 s of black (sensor noise) before the first picture"],
        ),
        Spec(
            "vfr-film",
            [(pan(2, 40.0), 3.75), (moving_object(still(10), 0.5, 200.0), 5.01), (still(9), 4.0)],
            [("cut", 0), ("cut", 0)],
            hard=["variable frame rate (12.5–50 fps)", "cuts at 3.75 and 8.76 s"],
            vfr=True,
        ),
        Spec(  # footage that moves in every shot (bikes.mp4-like): at 2 fps a shot changes as much as a cut does
            "handheld-action",
            [
                (shake(pan(0, 600.0)), 2.2),
                (moving_object(shake(pan(5, 450.0), seed=1), 0.3, 700.0), 2.4),
                (shake(pan(2, 520.0), seed=2), 2.2),
                (moving_object(shake(pan(6, 380.0), seed=3), 0.5, 900.0), 2.6),
                (shake(pan(9, 480.0), seed=4), 2.4),
            ],
            [("cut", 0), ("cut", 0), ("cut", 0), ("cut", 0)],
            hard=["hand-held pans 380-600 px/s, 2.2-2.6 s shots", "fast figures crossing", "pans bounce (whip back)"],
        ),
        Spec(
            "slideshow",
            [(still(i), 3.0) for i in range(8)],
            [("cut", 0), ("cut", 0), ("dissolve", 0.8), ("cut", 0), ("cut", 0), ("fade_black", 0.6), ("cut", 0)],
            hard=["real photos, 3 s each", "dissolve 0.8 s", "fade 0.6 s"],
        ),
    ]
    return out[:3] if quick else out


def write_suite(directory: Path, *, quick: bool = False, only: Sequence[str] | None = None) -> list[SuiteClip]:
    """Write every suite clip as `<name>.mp4` with `<name>.truth.json` beside it (skipped when already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    clips = []
    for spec in specs(quick):
        if only is not None and spec.name not in only:
            continue
        path = directory / f"{spec.name}.mp4"
        sidecar = path.with_suffix(".truth.json")
        if path.is_file() and sidecar.is_file():
            t = load_truth(path)
            clips.append(
                SuiteClip(
                    spec.name, path, t["duration"], [Transition(**x) for x in t["transitions"]], t["hard"], t["vfr"]
                )
            )
            continue
        frames, truth, duration = render(spec)
        write_video(path, frames, spec.fps)
        clip = SuiteClip(spec.name, path, duration, truth, spec.hard, spec.vfr)
        sidecar.write_text(json.dumps(clip.truth_json(), indent=2))
        clips.append(clip)
    return clips


# ---- scoring ----------------------------------------------------------------------------------------------------

TOLERANCE_S = 1.0  # a detected boundary matches a transition when its scene start lies within 1 s of the span


def score(detected: Sequence[float], truth: Sequence[Transition], tol: float = TOLERANCE_S) -> dict:
    """Greedy one-to-one matching in time order: precision, recall, F1, and the unmatched on both sides."""
    free = sorted(truth, key=lambda x: x.start)
    hits, false = [], []
    for d in sorted(detected):
        m = next((tr for tr in free if tr.start - tol <= d <= tr.end + tol), None)
        if m is None:
            false.append(round(d, 2))
        else:
            free.remove(m)
            hits.append((m, d))
    tp = len(hits)
    p = tp / len(detected) if detected else 1.0
    r = tp / len(truth) if truth else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "tp": tp,
        "fp": len(false),
        "fn": len(free),
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(f1, 3),
        "false": false,
        "missed": [round(t.start, 2) for t in free],
        "matches": [(tr.start, tr.end, round(d, 3)) for tr, d in hits],
    }
