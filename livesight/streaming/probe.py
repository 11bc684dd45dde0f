"""`livesight probe SOURCE`: what a source delivers — the first thing to run when a camera does not work."""

from __future__ import annotations

import argparse
import threading
import time

from livesight.errors import SourceError
from livesight.streaming.sources import SourceSpec, describe_error, open_source


def probe(source: str, *, frames: int = 30, timeout: float = 10.0) -> dict:
    """Opens the source and reads up to `frames` frames (blocking; bounded by `timeout` seconds)."""
    try:
        spec = SourceSpec.parse(source)
    except ValueError as e:
        raise SourceError(str(e)) from None
    result: dict = {"source": spec.shown, "kind": spec.kind}  # printed: credentials redacted
    t0 = time.monotonic()
    stop = threading.Event()
    error: list[BaseException] = []

    def work() -> None:
        closer = None
        try:
            info, it, closer = open_source(spec)
            result.update(codec=info.codec, width=info.width, height=info.height, declared_fps=info.fps)
            result["open_s"] = round(time.monotonic() - t0, 3)
            arrivals, pts = [], []
            for p, _frame in it:
                arrivals.append(time.monotonic() - t0)
                pts.append(p)
                if len(arrivals) >= frames or stop.is_set():
                    break
            result["frames"] = len(arrivals)
            if arrivals:
                result["first_frame_s"] = round(arrivals[0], 3)
                result["arrivals_s"] = [round(a, 3) for a in arrivals[:10]]
                result["pts_s"] = [round(p, 3) if p is not None else None for p in pts[:10]]
                valid = [p for p in pts if p is not None]
                if len(valid) > 1 and max(valid) > min(valid):  # AVI with B-frames may not be in order
                    result["measured_fps"] = round((len(valid) - 1) / (max(valid) - min(valid)), 2)
        except BaseException as e:  # reported to the caller below
            error.append(e)
        finally:
            if closer is not None:
                closer.close()

    th = threading.Thread(target=work, name="livesight-probe", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        stop.set()
        raise SourceError(f"{spec.shown}: no answer within {timeout:.0f}s")
    if error:
        raise SourceError(f"{spec.shown}: {describe_error(error[0], spec).reason}") from None
    if not result.get("frames"):
        raise SourceError(f"{spec.shown}: opened ({result.get('codec')}) but delivered no frame")
    return result


def run_probe(args: argparse.Namespace) -> int:
    r = probe(args.source, frames=args.frames, timeout=args.timeout)
    print(f"source:       {r['source']} ({r['kind']})")
    print(f"codec:        {r['codec']}  {r['width']}x{r['height']}")
    print(f"fps:          declared {r['declared_fps']}, measured {r.get('measured_fps', '?')} (from timestamps)")
    print(f"open:         {r.get('open_s', 0):.3f}s; first frame after {r['first_frame_s']:.3f}s")
    print(f"frames read:  {r['frames']}; first arrivals (s): {r['arrivals_s']}")
    print(f"first pts (s): {r['pts_s']}")
    return 0
