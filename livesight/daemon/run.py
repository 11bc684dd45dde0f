"""`livesight serve` and `livesight demo`: config, logging, signals, and the demo's terminal printer.

Signals (uvicorn-style): the first SIGINT/SIGTERM stops gracefully (bounded by DRAIN_TIMEOUT_S), a second one
forces exit. SIGHUP: the config is re-validated and a "restart needed" line is logged when it changed (the
pipeline is not reconfigured live).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from livesight.config import Config, load_config
from livesight.errors import ConfigError, LivesightError
from livesight.logsetup import setup_logging
from livesight.protocols.web.transport import run as run_loop

log = logging.getLogger("livesight")

DRAIN_TIMEOUT_S = 10.0


def _load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    server = cfg.server.model_dump()
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    logging_cfg = cfg.logging.model_dump()
    if args.log_format is not None:
        logging_cfg["format"] = args.log_format
    if args.log_level is not None:
        logging_cfg["level"] = args.log_level.upper()
    from livesight.config import parse_config

    data = cfg.model_dump()
    data["server"] = server
    data["logging"] = logging_cfg
    return _own_part(parse_config(data, origin=args.config or "demo.yaml"), getattr(args, "node", None))


def _own_part(cfg: Config, node: str | None) -> Config:
    """In a fleet, the cameras this node owns (docs/fleet.md); otherwise the config as it is."""
    from livesight.fleet.ownership import for_node

    return for_node(cfg, node)


def _log_fleet_part(cfg: Config) -> None:
    if cfg.fleet is None:
        return
    if cfg.cameras:
        log.info("node %s runs %d camera(s): %s", cfg.node.id, len(cfg.cameras), ", ".join(c.id for c in cfg.cameras))
    else:
        log.warning("node %s owns none of this fleet's cameras: it idles (more nodes than needed)", cfg.node.id)
    if not cfg.mqtt.enabled:
        log.warning("fleet without mqtt.enabled: no gateway can find node %s (nodes announce over MQTT)", cfg.node.id)


def preflight(cfg: Config) -> None:
    """Checks that need this machine, not just the schema (`serve` runs them before it starts; `validate-config` too,
    unless --schema-only): every problem found is named with its field, all at once (ConfigError)."""
    problems = machine_problems(cfg)
    if problems:
        raise ConfigError("\n  ".join(problems))


def machine_problems(cfg: Config) -> list[str]:
    """What would stop `serve` on this machine: files that must exist, the event log's directory, the MQTT TLS files,
    the model's weights (downloads are off: a local directory or the Hugging Face cache). Live sources may come and
    go: they get camera states, not a start-up error. The device (cuda, mps) is checked when the model loads."""
    problems = []
    for i, cam in enumerate(cfg.cameras):
        src = cam.source
        if "://" in src or src.startswith(("lavfi:", "builtin:", "/dev/")):
            continue
        if not Path(src).expanduser().is_file():
            problems.append(f"cameras.{i}.source: file not found: {src}")
    if cfg.memory.database:
        why = _unwritable(Path(cfg.memory.database).expanduser())
        if why:
            problems.append(f"memory.database: {why}")
    if cfg.mqtt.enabled and cfg.mqtt.tls is not None:
        from livesight.protocols.mqtt.connect import BrokerConnection

        try:
            BrokerConnection(cfg.mqtt)
        except ConfigError as e:
            problems.append(str(e))
    if cfg.model.path is not None:
        why = _no_weights(cfg.model.path)
        if why:
            problems.append(f"model.path: {why}")
    return problems


def _unwritable(db: Path) -> str | None:
    """Why the event log cannot be created at `db` (its missing directories are made), or None."""
    if db.is_dir():
        return f"{db} is a directory (name a file, e.g. {db / 'livesight.sqlite'})"
    if db.exists():
        return None if os.access(db, os.W_OK) else f"{db} is not writable"
    parent = db.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {db}: {parent} is not writable"
    return None


def _no_weights(path: str) -> str | None:
    """Why the checkpoint `path` cannot be loaded here (downloads are off), or None."""
    local = Path(path).expanduser()
    if local.is_dir():
        return None if (local / "config.json").is_file() else f"{path!r}: no config.json in it (not a checkpoint)"
    if path.startswith(("/", ".", "~")) or path.count("/") != 1:
        return f"{path!r}: no such directory"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    if not isinstance(try_to_load_from_cache(path, "config.json"), str):
        return f"{path!r} is not in the Hugging Face cache (downloads are off: fetch it first, or name a directory)"
    return None


def _install_signals(
    loop: asyncio.AbstractEventLoop, stop: callable, config_path: str | None, cfg: Config, node: str | None = None
) -> None:
    hits = {"n": 0}

    def on_stop(signame: str) -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            log.info("%s received: stopping (send again to force)", signame)
            stop()
        else:
            log.warning("%s received again: forcing exit", signame)
            os._exit(130)

    def on_hup() -> None:
        try:
            new = _own_part(load_config(config_path), node)
        except ConfigError as e:
            log.error("SIGHUP: config is invalid, keeping the running one: %s", e)
            return
        if new == cfg:
            log.info("SIGHUP: config unchanged")
        else:
            log.warning("SIGHUP: config changed on disk; restart needed to apply it (the running config is kept)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, on_hup)


async def _serve(
    cfg: Config,
    config_path: str | None,
    *,
    duration: float | None = None,
    demo_question: str | None = None,
    node: str | None = None,
) -> None:
    from livesight.daemon.app import App

    app = App(cfg)
    loop = asyncio.get_running_loop()
    _install_signals(loop, app.stop, config_path, cfg, node)
    async with asyncio.TaskGroup() as tg:
        app_task = tg.create_task(app.run(), name="app")
        helpers: list[asyncio.Task[None]] = []
        if demo_question is not None:
            from livesight.daemon.demo_printer import print_demo

            helpers.append(tg.create_task(print_demo(app, demo_question), name="demo-printer"))
        if duration is not None:
            helpers.append(tg.create_task(_stop_after(app, duration), name="duration"))
        helpers.append(tg.create_task(enforce_drain(app_task, app.stopping, DRAIN_TIMEOUT_S), name="drain"))
        with contextlib.suppress(asyncio.CancelledError):
            await app_task
        for t in helpers:
            t.cancel()


async def enforce_drain(
    app_task: asyncio.Task[None], stopping: asyncio.Event, timeout_s: float, *, grace_s: float = 5.0
) -> None:
    """Once stopping, the app has `timeout_s` to finish; then it is cancelled, and if even that does not end it
    within `grace_s` (a thread that will not return), the process exits with status 1."""
    await stopping.wait()
    done, _ = await asyncio.wait({app_task}, timeout=timeout_s)
    if done:
        return
    log.error("graceful stop took longer than %.0f s: cancelling what is left", timeout_s)
    app_task.cancel()
    done, _ = await asyncio.wait({app_task}, timeout=grace_s)
    if not done:
        log.error("the daemon did not stop after cancelling: exiting now")
        logging.shutdown()
        os._exit(1)


async def _stop_after(app: object, seconds: float) -> None:
    await asyncio.sleep(seconds)
    app.stop()  # type: ignore[attr-defined]


def _run(args: argparse.Namespace, *, demo: bool) -> int:
    if demo and args.log_level is None:
        args.log_level = "WARNING"  # the demo printer already says what happens
    cfg = _load(args)
    preflight(cfg)
    setup_logging(cfg.logging.level, cfg.logging.format, secrets=cfg.secrets())
    _log_fleet_part(cfg)
    try:
        run_loop(
            _serve(
                cfg,
                args.config,
                duration=getattr(args, "duration", None),
                demo_question=args.question if demo else None,
                node=getattr(args, "node", None),
            )
        )
    except* LivesightError as eg:
        raise first_leaf(eg) from None
    return 0


def first_leaf(eg: BaseExceptionGroup) -> BaseException:
    """The first exception of a group that is not a group (TaskGroups nest them)."""
    first = eg.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def run_serve(args: argparse.Namespace) -> int:
    return _run(args, demo=False)


def run_demo(args: argparse.Namespace) -> int:
    return _run(args, demo=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_serve(argparse.Namespace()))
