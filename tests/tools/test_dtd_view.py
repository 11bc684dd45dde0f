"""`livesight dtd-view` run as a real command on a generated lossless clip with exact ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from livesight.tools.dtd_view import DIM, OUTLINE

S, PX, G = 448, 28, 16  # frame size = model input size (prepare is the identity), token px, tokens per side
FPS = 10
ROW = 5  # the square's top token row (it is 2x2 tokens)
MOVE = range(1, 7)  # frames where the square moves one token right
CUT = 14  # first frame of the second scene
N = 20  # frames processed (--max-frames); the clip has one more


def square_col(i: int) -> int:
    return 1 + min(i, MOVE[-1])  # left token column of the square in frame i (< CUT)


def frame(i: int) -> np.ndarray:
    y, x = np.mgrid[0:S, 0:S]
    if i >= CUT:  # another scene: different colours everywhere, no square
        return np.stack([220 - y // 4, np.full_like(x, 60), 40 + x // 4], axis=-1).astype(np.uint8)
    img = np.stack([40 + x // 4, 40 + y // 4, np.full_like(x, 120)], axis=-1).astype(np.uint8)
    c = square_col(i)
    img[ROW * PX : (ROW + 2) * PX, c * PX : (c + 2) * PX] = (255, 40, 40)
    return img


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "square_cut.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=FPS)  # lossless: decoded pixels == generated pixels
        stream.width, stream.height, stream.pix_fmt = S, S, "bgr0"
        for i in range(N + 1):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            for pkt in stream.encode(f):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def livesight(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livesight", "dtd-view", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def view(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("view") / "dv"
    args = ["--mode", "pixel", "--threshold", "0.04", "--fps", str(FPS), "--max-frames", str(N)]
    r = livesight(str(clip), "--out", str(out), *args)
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "summary.json").read_text()), r.stdout


def tokens(*cols: int) -> set[int]:
    return {(ROW + dr) * G + c for c in cols for dr in (0, 1)}


def test_writes_one_png_per_frame_a_timeline_and_a_summary(view: tuple[Path, dict, str]) -> None:
    out, summary, stdout = view
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:04d}.png" for i in range(N)]
    with Image.open(out / "timeline.png") as tl:
        assert tl.format == "PNG" and tl.width >= 600
    assert summary["frames_sampled"] == N and summary["truncated_at_max_frames"]  # the clip's last frame: not shown
    assert f"--max-frames {N}" in stdout
    assert summary["mode"] == "pixel" and summary["threshold"] == 0.04
    assert summary["model"]["name"] == "tiny-random" and summary["model"]["random_weights"] is True
    assert "random weights" in summary["note"] and "pixel mode" in summary["note"]
    assert f"to {out}" in stdout and "overall drop ratio" in stdout


def test_drop_ratios_follow_the_ground_truth(view: tuple[Path, dict, str]) -> None:
    _, summary, _ = view
    rows = summary["frames"]
    assert [r["pts"] for r in rows] == pytest.approx([i / FPS for i in range(N)], abs=1e-3)
    assert rows[0]["full"] and rows[0]["drop_ratio"] == 0.0
    assert rows[CUT]["drop_ratio"] < 0.05, "a hard cut changes (nearly) every token"
    for i in MOVE:  # the square moved one token right: the column it left and the one it entered are kept
        c = square_col(i - 1)
        assert set(rows[i]["kept_idx"]) == tokens(c, c + 2), i
        assert rows[i]["drop_ratio"] == pytest.approx(1 - 4 / G**2, abs=1e-4)
        assert not rows[i]["encoder_skipped"]
    static = [i for i in range(N) if i > MOVE[-1] and i != CUT]
    for i in static:
        assert rows[i]["drop_ratio"] == 1.0 and rows[i]["encoder_skipped"], i
    assert summary["encoder_skipped_frames"] == len(static)
    kept = G**2 * 2 + 4 * len(MOVE)  # first frame and cut whole (the cut: all 256 here), 4 per move
    assert summary["tokens_kept"] == kept and summary["tokens_total"] == N * G**2
    assert summary["overall_drop_ratio"] == pytest.approx(1 - kept / (N * G**2), abs=1e-4)


def test_png_dims_dropped_tokens_and_outlines_kept_ones(view: tuple[Path, dict, str]) -> None:
    out, summary, _ = view
    i = 3
    with Image.open(out / f"frame_{i:04d}.png") as im:
        png = np.asarray(im.convert("RGB")).astype(int)
    assert png.shape[0] > S and png.shape[1] == S  # a caption strip below the frame
    orig = frame(i).astype(int)
    keep = np.zeros(G * G, bool)
    keep[summary["frames"][i]["kept_idx"]] = True

    def patch(a: np.ndarray, t: int) -> np.ndarray:
        r, c = divmod(t, G)
        return a[r * PX : (r + 1) * PX, c * PX : (c + 1) * PX]

    dropped = [t for t in range(G * G) if not keep[t]]
    for t in (0, dropped[len(dropped) // 2], ROW * G + square_col(i)):  # incl. the square's unchanged left column
        assert not keep[t]
        assert np.abs(patch(png, t) - patch(orig, t) * DIM).max() <= 1, t
        assert patch(png, t).mean() < patch(orig, t).mean() - 20, t
    for t in np.flatnonzero(keep):
        p, o = patch(png, t), patch(orig, t)
        border = np.concatenate([p[0], p[-1], p[:, 0], p[:, -1]])
        assert (border == OUTLINE).all(), t
        assert (p[1:-1, 1:-1] == o[1:-1, 1:-1]).all(), t  # inside the outline: the frame as the model sees it


@pytest.mark.parametrize("case", ["missing", "not_a_video", "out_is_a_file", "bad_threshold"])
def test_bad_input_is_one_line_and_exit_2(case: str, clip: Path, tmp_path: Path) -> None:
    video, out, extra = tmp_path / "none.mp4", tmp_path / "out", []
    expect = {
        "missing": "no such file",
        "not_a_video": "not a video",
        "out_is_a_file": "not a directory",
        "bad_threshold": "--threshold",
    }[case]
    if case == "not_a_video":
        video.write_text("hello, I am not a video\n")
    elif case == "out_is_a_file":
        video = clip
        out.write_text("")
    elif case == "bad_threshold":
        video, extra = clip, ["--threshold", "1.5"]
    r = livesight(str(video), "--out", str(out), *extra)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not list(tmp_path.rglob("*.png"))
