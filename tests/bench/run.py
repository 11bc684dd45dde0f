"""Runs `livesight bench NAME --quick` as a user would (a subprocess) and returns its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def bench_quick(name: str, out: Path, timeout: float = 240, *args: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "livesight", "bench", name, "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr
    return json.loads((out / f"{name}.json").read_text())
