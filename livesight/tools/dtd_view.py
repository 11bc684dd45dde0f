"""`livesight dtd-view VIDEO --out DIR`: pictures of which vision tokens Differential Token Dropping drops.

Runs the same per-frame steps as the daemon (prepare → DTD pre-check → vision encoder unless skipped → DTD decision)
on a video file sampled by timestamp, and writes into DIR:

  frame_NNNN.png   the model-sized frame of each sampled frame; dropped 28x28 token regions dimmed to DIM of their
                   brightness, kept ones outlined (1 px, OUTLINE); a caption strip below the frame with the frame
                   number, pts, kept/total tokens, drop ratio and "encoder skipped" / "kept whole" when so
  timeline.png     drop ratio per sampled frame over pts; encoder-skipped and kept-whole frames marked
  summary.json     one row per sampled frame (with the kept token indices), the overall drop ratio, the settings
                   and the model used

At most --max-frames sampled frames are processed (the summary says when the video went on past them).
Bad input (missing file, not a video, an output directory that cannot be written) is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from livesight.errors import ConfigError, LivesightError, SourceError

DIM = 0.35  # brightness of a dropped token's region
OUTLINE = (0, 230, 118)  # RGB border of a kept token's region
CAPTION_BG = (24, 24, 24)
CAPTION_FG = (235, 235, 235)
CAPTION_PX = 14  # font size of the caption
DEFAULT_THRESHOLD = {"feature": 0.5, "pixel": 0.04, "relative": 0.5}


class OutputError(LivesightError):
    """The output directory cannot be created or written."""


@dataclass(frozen=True)
class FrameRow:
    """What DTD decided for one sampled frame, as written to summary.json."""

    frame: int  # sampled frame number (the N of frame_NNNN.png)
    decoded_index: int  # frame number in the decoded video
    pts: float
    grid_hw: tuple[int, int]
    kept: int
    total: int
    drop_ratio: float
    encoder_skipped: bool
    full: bool  # kept whole by rule (first frame, new resolution, keyframe)
    png: str
    kept_idx: list[int]  # row-major token indices that were kept


# ---- rendering (pure: arrays in, arrays out) ------------------------------------------------------------------


def overlay(prepared: np.ndarray, keep: np.ndarray, grid_hw: tuple[int, int], token_px: int = 28) -> np.ndarray:
    """[H, W, 3] uint8 frame, [gh*gw] keep mask → a copy with dropped regions dimmed and kept ones outlined."""
    gh, gw = grid_hw
    if keep.size != gh * gw:
        raise ValueError(f"keep mask has {keep.size} entries, grid {gh}x{gw} needs {gh * gw}")
    img = prepared.copy()
    h, w = gh * token_px, gw * token_px
    region = img[:h, :w].reshape(gh, token_px, gw, token_px, 3)  # a view into img
    dropped = ~keep.reshape(gh, 1, gw, 1, 1)
    np.copyto(region, (region * DIM).astype(np.uint8), where=dropped)
    colour = np.array(OUTLINE, np.uint8)
    kept = keep.reshape(gh, gw)
    for r, c in zip(*np.nonzero(kept), strict=True):
        y0, x0 = r * token_px, c * token_px
        img[y0, x0 : x0 + token_px] = colour
        img[y0 + token_px - 1, x0 : x0 + token_px] = colour
        img[y0 : y0 + token_px, x0] = colour
        img[y0 : y0 + token_px, x0 + token_px - 1] = colour
    return img


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def with_caption(img: np.ndarray, lines: list[str]) -> Image.Image:
    """The frame with a dark caption strip below it (the frame's pixels stay at rows [0, H))."""
    h, w = img.shape[:2]
    font = _font(CAPTION_PX)
    line_h = CAPTION_PX + 5
    out = Image.new("RGB", (w, h + 6 + line_h * len(lines)), CAPTION_BG)
    out.paste(Image.fromarray(img), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(lines):
        draw.text((6, h + 4 + i * line_h), text, fill=CAPTION_FG, font=font)
    return out


def caption(row: FrameRow, mode: str, threshold: float) -> list[str]:
    first = f"frame {row.frame}  pts {row.pts:.2f} s  kept {row.kept}/{row.total} tokens  drop {row.drop_ratio:.1%}"
    flags = [f"{mode} mode, threshold {threshold:g}"]  # ASCII: the default font has no Greek letters
    if row.encoder_skipped:
        flags.append("encoder skipped")
    if row.full:
        flags.append("kept whole (first frame / new size / keyframe)")
    return [first, "  |  ".join(flags)]


def plot_timeline(rows: list[FrameRow], path: Path, *, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(10, 3.6), dpi=100)
    ax = fig.add_subplot()
    pts = [r.pts for r in rows]
    ax.plot(pts, [r.drop_ratio for r in rows], "-o", color="tab:blue", ms=3, lw=1, label="drop ratio")
    skipped = [r for r in rows if r.encoder_skipped]
    if skipped:
        ax.scatter(
            [r.pts for r in skipped],
            [r.drop_ratio for r in skipped],
            marker="x",
            color="tab:red",
            s=30,
            zorder=3,
            label="encoder skipped",
        )
    full = [r for r in rows if r.full]
    if full:
        ax.scatter(
            [r.pts for r in full],
            [r.drop_ratio for r in full],
            marker="s",
            facecolors="none",
            edgecolors="tab:green",
            s=40,
            zorder=3,
            label="kept whole (first frame / keyframe)",
        )
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("pts (s)")
    ax.set_ylabel("dropped tokens / all")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


# ---- input / output checks (before the model is loaded) -------------------------------------------------------


def _check_video(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if not path.is_file():
        raise SourceError(f"not a file: {path}")


def _frames(path: Path, fps: float, limit: int) -> Iterator[Any]:
    """Sampled frames of a file; decoder errors become SourceError (one line)."""
    import av

    from livesight.streaming.sampler import sample_video

    try:
        yield from sample_video(path, fps, max_frames=limit)
    except av.error.FFmpegError as e:
        reason = "not a video file (invalid data)" if isinstance(e, av.error.InvalidDataError) else e.strerror
        raise SourceError(f"{path}: {reason}") from None
    except IndexError:  # container without a video stream: streams.video[0]
        raise SourceError(f"{path}: has no video stream") from None


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"--out {out}: exists and is not a directory") from None
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create the directory ({e.strerror})") from None
    probe = out / ".livesight-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write there ({e.strerror})") from None


def _settings(args: argparse.Namespace) -> tuple[float, float, int]:
    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD[args.mode]
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (got {threshold:g})")
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise ConfigError(f"--fps must be a positive number (got {args.fps:g})")
    if args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1 (got {args.max_frames})")
    return threshold, float(args.fps), int(args.max_frames)


# ---- the command ------------------------------------------------------------------------------------------------


def run_dtd_view(args: argparse.Namespace) -> int:
    video, out = Path(args.video), Path(args.out)
    threshold, fps, max_frames = _settings(args)
    _check_video(video)
    frames = _frames(video, fps, max_frames + 1)  # one more to tell whether the video went on
    first = next(frames, None)  # opens and decodes before the model is loaded: bad input fails fast
    if first is None:
        raise SourceError(f"{video}: no decodable frame")
    _prepare_out(out)

    from livesight.config import DTDConfig, ModelConfig
    from livesight.model.dtd import DTD
    from livesight.model.registry import load_backend

    model_path = getattr(args, "model", None)
    mcfg = (
        ModelConfig(path=model_path, device="auto", dtype="auto") if model_path else ModelConfig(preset="tiny-random")
    )
    backend = load_backend(mcfg)
    info = backend.info
    dtd = DTD(DTDConfig(mode=args.mode, threshold=threshold), token_px=info.token_px)

    rows: list[FrameRow] = []
    truncated = False
    sampled = first
    while sampled is not None:
        if len(rows) >= max_frames:
            truncated = True
            break
        prepared = backend.prepare(sampled.rgb)
        need = dtd.precheck(prepared, sampled.pts)
        enc = backend.encode([prepared])[0] if need else None
        step = dtd.decide("view", sampled.pts, 0.0, prepared, enc)
        png = f"frame_{len(rows):04d}.png"
        row = FrameRow(
            frame=len(rows),
            decoded_index=sampled.index,
            pts=round(sampled.pts, 4),
            grid_hw=step.grid_hw,
            kept=step.kept,
            total=step.total,
            drop_ratio=round(step.drop_ratio, 4),
            encoder_skipped=step.encoder_skipped,
            full=step.full,
            png=png,
            kept_idx=np.flatnonzero(step.keep).tolist(),
        )
        img = overlay(prepared, step.keep, step.grid_hw, info.token_px)
        try:
            with_caption(img, caption(row, args.mode, threshold)).save(out / png)
        except OSError as e:
            raise OutputError(f"{out / png}: cannot write ({e.strerror or e})") from None
        rows.append(row)
        sampled = next(frames, None)
    frames.close()

    kept = sum(r.kept for r in rows)
    total = sum(r.total for r in rows)
    overall = 1.0 - kept / total if total else 0.0
    if info.random_weights:
        note = (
            f"model {info.name} has random weights: feature and relative mode decisions are not a real model's; "
            "pixel mode compares pixels and does not depend on the model"
        )
    else:
        note = "pixel mode compares pixels and does not depend on the model"
    summary: dict[str, Any] = {
        "video": str(video),
        "mode": args.mode,
        "threshold": threshold,
        "reference": dtd.cfg.reference,
        "pixel_precheck": dtd.cfg.pixel_precheck,
        "fps": fps,
        "model": {"name": info.name, "random_weights": info.random_weights, "image_size": info.image_size},
        "note": note,
        "frames_sampled": len(rows),
        "truncated_at_max_frames": truncated,
        "tokens_total": total,
        "tokens_kept": kept,
        "overall_drop_ratio": round(overall, 4),
        "encoder_skipped_frames": sum(r.encoder_skipped for r in rows),
        "frames": [asdict(r) for r in rows],
    }
    mode_note = " (random-weight model)" if info.random_weights and args.mode != "pixel" else ""
    title = (
        f"{video.name}: DTD {args.mode}{mode_note}, τ={threshold:g}, {fps:g} fps — "
        f"overall drop {overall:.1%}, encoder skipped on {summary['encoder_skipped_frames']}/{len(rows)} frames"
    )
    try:
        plot_timeline(rows, out / "timeline.png", title=title)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write ({e.strerror or e})") from None

    print(f"wrote {len(rows)} frame PNGs ({rows[0].png} … {rows[-1].png}), timeline.png, summary.json to {out}")
    print(
        f"overall drop ratio {overall:.1%} ({total - kept}/{total} tokens) in {args.mode} mode, τ={threshold:g}; "
        f"encoder skipped on {summary['encoder_skipped_frames']} of {len(rows)} frames; model {info.name}"
    )
    if truncated:
        print(f"stopped at --max-frames {max_frames} (pts {rows[-1].pts:.2f} s); the video goes on")
    if info.random_weights and args.mode != "pixel":
        print(f"note: {note}")
    return 0
