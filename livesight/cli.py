"""Command line: `livesight serve | demo | gateway | chat | validate-config | probe | dtd-view | bench`.

User-facing errors (LivesightError) print as one line on stderr with a non-zero exit, never a traceback.
Each command's implementation lives in the part of the package it belongs to and is imported lazily,
so `livesight validate-config` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from livesight.errors import LivesightError


def _cmd_validate(args: argparse.Namespace) -> int:
    from livesight.config import load_config

    cfg = load_config(args.config)
    if not args.schema_only:
        from livesight.daemon.run import preflight

        preflight(cfg)  # what `serve` would find missing on this machine
    print("OK")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from livesight.daemon.run import run_serve

    return run_serve(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from livesight.daemon.run import run_demo

    return run_demo(args)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from livesight.gateway.run import run_gateway

    return run_gateway(args)


def _cmd_chat(args: argparse.Namespace) -> int:
    from livesight.protocols.client.chat import run_chat

    return run_chat(args)


def _cmd_probe(args: argparse.Namespace) -> int:
    from livesight.streaming.probe import run_probe

    return run_probe(args)


def _cmd_dtd_view(args: argparse.Namespace) -> int:
    from livesight.tools.dtd_view import run_dtd_view

    return run_dtd_view(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from livesight.bench.runner import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livesight", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    sp = add("validate-config", _cmd_validate, "check a config file: prints OK or every error with its field")
    sp.add_argument("config")
    sp.add_argument(
        "--schema-only",
        action="store_true",
        help="check the config alone, not this machine (files, the event log's directory, TLS files, model weights)",
    )

    for name, fn, help in (
        ("serve", _cmd_serve, "run the daemon"),
        ("demo", _cmd_demo, "run the daemon on the built-in demo stream and print what happens"),
    ):
        sp = add(name, fn, help)
        sp.add_argument("--config", default=None, help="YAML config (default: the embedded demo config)")
        sp.add_argument("--host", default=None, help="override server.host")
        sp.add_argument("--port", type=int, default=None, help="override server.port (0 = any free port)")
        sp.add_argument("--log-format", choices=["text", "json"], default=None, help="override logging.format")
        sp.add_argument("--log-level", default=None, help="override logging.level")
        if name == "serve":
            sp.add_argument("--node", default=None, help="this node's id in a fleet (overrides node.id)")
        if name == "demo":
            sp.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
            sp.add_argument("--question", default="What is happening?", help="asked every few seconds")

    sp = add("gateway", _cmd_gateway, "one front for a fleet: routes each client's questions to the camera's node")
    sp.add_argument("--config", required=True, help="the fleet's YAML config (its mqtt, server and cameras)")
    sp.add_argument("--host", default=None, help="override server.host")
    sp.add_argument("--port", type=int, default=None, help="override server.port (0 = any free port)")
    sp.add_argument("--log-format", choices=["text", "json"], default=None, help="override logging.format")
    sp.add_argument("--log-level", default=None, help="override logging.level")

    sp = add("chat", _cmd_chat, "interactive chat client for a running daemon")
    sp.add_argument("url", nargs="?", default="ws://127.0.0.1:8765", help="ws://HOST:PORT")
    sp.add_argument("--token", default=None, help="bearer token (or LIVESIGHT_TOKEN)")
    sp.add_argument("--camera", default=None)

    sp = add("probe", _cmd_probe, "print what a video source delivers (codec, size, fps, first frames timing)")
    sp.add_argument("source")
    sp.add_argument("--frames", type=int, default=30, help="frames to read")
    sp.add_argument("--timeout", type=float, default=10.0, help="seconds before giving up")

    sp = add("dtd-view", _cmd_dtd_view, "write PNGs showing dropped/kept tokens and a drop-ratio timeline")
    sp.add_argument("video")
    sp.add_argument("--out", required=True)
    sp.add_argument("--mode", choices=["feature", "pixel", "relative"], default="pixel")
    sp.add_argument("--threshold", type=float, default=None, help="default: 0.5 feature, 0.04 pixel, 0.5 relative")
    sp.add_argument("--fps", type=float, default=2.0, help="sampling rate")
    sp.add_argument("--max-frames", type=int, default=60, help="sampled frames processed (one PNG each)")
    sp.add_argument("--model", default=None, help="checkpoint directory or HF id (default: tiny random-weight model)")

    sp = add("bench", _cmd_bench, "run benchmarks, writing JSON and PNG to --out")
    sp.add_argument(
        "which",
        choices=["ingest", "dtd", "memory", "e2e", "capacity", "scenes", "gateway", "web", "remote", "recall", "all"],
    )
    sp.add_argument("--out", default="bench-out")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--shape", choices=["tiny", "7b"], default="tiny", help="random-weight model shape")
    sp.add_argument("--quick", action="store_true", help="shorter runs (for tests)")
    sp.add_argument(
        "--docs",
        default=None,
        help="also regenerate DOCS/benchmarks.md (JSON and plots in DOCS/bench; one benchmark: the others kept)",
    )
    sp.add_argument(
        "--baseline",
        default=None,
        help="e2e, capacity, web: also measure the checkout in this directory, side by side (in turns)",
    )
    sp.add_argument("--seconds", type=float, default=None, help="e2e, capacity: measuring window (default per bench)")
    sp.add_argument("--cameras", default=None, help="capacity: camera counts, e.g. 1,4,16 (default 1,2,4,8,16,32)")
    sp.add_argument("--footage", default=None, help="capacity: demo and/or vtest, e.g. demo (default both)")
    sp.add_argument("--warmup", type=float, default=None, help="capacity: seconds before the window (default 10)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LivesightError as e:
        print(f"livesight: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
