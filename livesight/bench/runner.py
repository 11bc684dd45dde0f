"""`livesight bench ingest|dtd|memory|e2e|scenes|recall|all --out DIR`: run benchmarks, write JSON (+PNG) per benchmark
into DIR, and regenerate docs/benchmarks.md's figures from the JSON (`report.py`)."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from livesight.bench import BENCHES
from livesight.bench.report import add_to_report, write_report


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# bench name → (module, function) where it is not `livesight.bench.<name>:run`
_ENTRY = {"web": ("gateway", "run_web"), "recall": ("recall.run", "run")}


def run_one(name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    module, fn = _ENTRY.get(name, (name, "run"))
    mod = importlib.import_module(f"livesight.bench.{module}")
    kwargs: dict[str, Any] = {"quick": args.quick}
    if name != "ingest":
        kwargs.update(device=args.device, shape=args.shape)
    if name == "web":
        kwargs["baseline"] = getattr(args, "baseline", None)
    if name in ("e2e", "capacity"):
        kwargs.update(baseline=getattr(args, "baseline", None), seconds=getattr(args, "seconds", None))
    if name == "capacity":
        kwargs.update(
            cameras=getattr(args, "cameras", None),
            footage=getattr(args, "footage", None),
            warmup=getattr(args, "warmup", None),
        )
    t0 = time.perf_counter()
    result = getattr(mod, fn)(out, **kwargs)
    result = {"benchmark": name, "machine": machine(), "seconds": round(time.perf_counter() - t0, 1), **result}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def run_bench(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = BENCHES if args.which == "all" else (args.which,)
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] bench {name} …", flush=True)
        result = run_one(name, out, args)
        print(f"[{i}/{len(names)}] bench {name}: done in {result['seconds']} s → {out / (name + '.json')}", flush=True)
    if args.which == "all":
        path = write_report(out, Path(args.docs) if args.docs else None)
        print(f"report: {path}")
    elif args.docs:
        path = add_to_report(out / f"{args.which}.json", Path(args.docs))
        print(f"report: {path}")
    return 0
