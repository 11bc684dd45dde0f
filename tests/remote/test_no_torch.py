"""A light edge install: with `model.backend: openai` the daemon imports neither torch nor transformers. The real
`livesight serve` runs in a subprocess where both are made unimportable (a meta-path blocker that also records every
attempt; it proves it was installed, and a probe under the same environment shows a forbidden import raising), and
answers a question from a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from livesight.bench.remote.llama_server import free_port
from livesight.bench.remote.model_stub import Reply, StubServer
from tests.remote.helpers import ask_ws

BLOCKER = """
import os, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            with open(os.environ["LIVESIGHT_BLOCKED_LOG"], "a") as f:
                f.write(name + "\\n")
            raise ImportError(f"{name} is blocked in this test (light install)")
        return None
sys.meta_path.insert(0, _Block())
with open(os.environ["LIVESIGHT_BLOCKER_INSTALLED"], "a") as f:
    f.write(f"{os.getpid()}\\n")
"""

ROOT = Path(__file__).resolve().parents[2]


async def test_serve_with_the_openai_backend_never_imports_torch_or_transformers(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    blocked = tmp_path / "blocked.log"
    blocked.write_text("")
    async with StubServer([Reply("a red car")]) as srv:
        cfg = tmp_path / "edge.yaml"
        cfg.write_text(
            "cameras: [{id: cam, source: 'lavfi:testsrc2=size=320x240:rate=10', sample_fps: 2}]\n"
            f"model: {{backend: openai, base_url: '{srv.base_url}', name: stub, max_new_tokens: 8}}\n"
            "memory: {database: null}\n"
            "scenes: {detector: dtd}\n"
        )
        port = free_port()
        installed = tmp_path / "installed.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
            "LIVESIGHT_BLOCKED_LOG": str(blocked),
            "LIVESIGHT_BLOCKER_INSTALLED": str(installed),
        }
        # the blocker works: under the same environment a forbidden import raises (and is recorded)
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import torch", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await probe.communicate()
        assert probe.returncode != 0 and b"torch is blocked in this test" in err, err.decode(errors="replace")
        assert blocked.read_text() == "torch\n" and installed.read_text() == f"{probe.pid}\n"
        blocked.write_text("")
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "livesight", "serve", "--config", str(cfg), "--port", str(port)),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        lines: list[str] = []

        async def read_log() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                lines.append(raw.decode(errors="replace").rstrip())
                del lines[:-200]

        reader = asyncio.create_task(read_log(), name="serve-log")
        try:
            async with asyncio.timeout(60):
                while not any("listening on" in line for line in lines):
                    if proc.returncode is not None:
                        raise AssertionError("serve exited:\n" + "\n".join(lines[-30:]))
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # a few sampled frames with news
            done, _ = await ask_ws(port, "What do you see?")
            assert done["status"] == "completed" and done["text"] == "a red car", (done, lines[-20:])
            assert srv.requests, "the question reached the server"
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await proc.wait()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert f"{proc.pid}\n" in installed.read_text().splitlines(keepends=True), "serve ran without the blocker"
    assert blocked.read_text() == "", f"imports attempted: {blocked.read_text()}"
    assert proc.returncode == 0, "\n".join(lines[-30:])
