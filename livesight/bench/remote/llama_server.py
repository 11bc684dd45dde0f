"""A real OpenAI-compatible vision server for tests and `livesight bench remote`: llama.cpp's server (PyPI
`llama-cpp-python[server]`) serving a GGUF conversion of the tiny random Qwen2.5-VL with its vision
projector (docs: ../shared/DESIGN.md §11).

    model, mmproj = build_gguf(cache_dir)          # minutes the first time, then cached (keyed by the recipe)
    with LlamaServer(model, mmproj) as srv:        # python -m llama_cpp.server on a free loopback port
        srv.base_url                               # http://127.0.0.1:PORT/v1

The converter is llama.cpp's own `convert_hf_to_gguf.py`, taken from the llama-cpp-python sdist of the installed
version (downloaded once with `pip download --no-binary :all:` into the cache when pip's cache does not hold it).
Traps (checked): the converter maps `visual.merger.mlp.{bid}` only for bid < vision depth, so the vision tower needs
depth >= 3 (here 4, with full attention at blocks 1 and 3); it needs `sentencepiece` importable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# a checkout's .cache/ (gitignored), else the user's cache; LIVESIGHT_TEST_CACHE overrides
_DEFAULT_CACHE = ROOT / ".cache" if (ROOT / "pyproject.toml").is_file() else Path.home() / ".cache" / "livesight"
CACHE = Path(os.environ.get("LIVESIGHT_TEST_CACHE", _DEFAULT_CACHE))
RECIPE_VERSION = "1"  # bump when the model recipe below changes (the cache key)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% else %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def llama_cpp_version() -> str | None:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def server_available() -> str | None:
    """None when the real server can run here, else why not (a skip reason)."""
    version = llama_cpp_version()
    if version is None:
        return "needs llama-cpp-python[server] (pip install -e '.[dev]')"
    for mod in ("fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "sentencepiece"):
        try:
            __import__(mod)
        except ImportError:
            return f"needs {mod} (llama-cpp-python[server], sentencepiece: pip install -e '.[dev]')"
    return None


def _sdist(version: str) -> Path:
    """The llama-cpp-python sdist of `version` (it carries llama.cpp's converter): cached, else pip-downloaded."""
    where = CACHE / "llama-cpp"
    name = f"llama_cpp_python-{version}.tar.gz"
    if (where / name).is_file():
        return where / name
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet"),
            *(f"llama-cpp-python=={version}", "-d", str(where)),
        ],
        check=True,
        timeout=900,
    )
    return where / name


def converter(version: str) -> Path:
    """llama.cpp's convert_hf_to_gguf.py (with conversion/ and gguf-py/) unpacked from the sdist, cached."""
    out = CACHE / "llama-cpp" / f"convert-{version}"
    script = out / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(_sdist(version)) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix) :]
            if rel == "convert_hf_to_gguf.py" or rel.startswith(("conversion/", "gguf-py/")):
                m.name = rel
                members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    tmp.replace(out)
    return script


def _save_tiny_hf(d: Path) -> None:
    """A tiny random Qwen2.5-VL as a Hugging Face directory the converter reads (weights, tokenizer, template)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from livesight.model.tiny import tiny_config
    from livesight.model.tokenizer import qwen_tokenizer

    cfg = tiny_config()
    vc = cfg.vision_config
    vc.depth, vc.fullatt_block_indexes = 4, [1, 3]  # the converter needs depth >= 3 (merger.mlp.2)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.save_pretrained(d)
    tok = qwen_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(d)
    (d / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Qwen2VLImageProcessor",
                "do_resize": True,
                "do_rescale": True,
                "do_normalize": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "patch_size": 14,
                "temporal_patch_size": 2,
                "merge_size": 2,
                "min_pixels": 3136,
                "max_pixels": 12845056,
            }
        )
    )


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One builder at a time across processes (pytest-xdist workers share the cache)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_gguf(cache: Path = CACHE) -> tuple[Path, Path]:
    """(model.gguf, mmproj.gguf) of the tiny random Qwen2.5-VL, built once per recipe and llama.cpp version."""
    with _exclusive(cache / "build.lock"):
        return _build_gguf(cache)


def _build_gguf(cache: Path) -> tuple[Path, Path]:
    version = llama_cpp_version()
    assert version is not None
    key = hashlib.sha256(f"{RECIPE_VERSION}:{version}".encode()).hexdigest()[:12]
    out = cache / "gguf" / f"tiny-qwen2.5-vl-{key}"
    model, mmproj = out / "tiny.gguf", out / "mmproj.gguf"
    if model.is_file() and mmproj.is_file():
        return model, mmproj
    script = converter(version)
    work = out.with_suffix(".tmp")
    shutil.rmtree(work, ignore_errors=True)
    hf = work / "hf"
    hf.mkdir(parents=True)
    _save_tiny_hf(hf)
    env = {**os.environ, "PYTHONPATH": str(script.parent / "gguf-py"), "NO_LOCAL_GGUF": ""}
    for extra, dest in (([], work / "tiny.gguf"), (["--mmproj"], work / "mmproj.gguf")):
        subprocess.run(
            [sys.executable, str(script), str(hf), *extra, "--outfile", str(dest), "--outtype", "f32"],
            check=True,
            env=env,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    shutil.rmtree(hf)
    shutil.rmtree(out, ignore_errors=True)
    work.replace(out)
    return model, mmproj


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` in a subprocess on a free loopback port; stopped (and waited for) on exit."""

    def __init__(
        self, model: Path, mmproj: Path, *, n_ctx: int = 8192, port: int | None = None, embedding: bool = False
    ) -> None:
        """`embedding`: serve /v1/embeddings (llama.cpp's `--embedding true`; this model has no pooling: one vector per
        token, which livesight's embedding client mean-pools)."""
        self.model, self.mmproj, self.n_ctx, self.embedding = model, mmproj, n_ctx, embedding
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, *, timeout: float = 120.0) -> None:
        import tempfile

        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log_path = Path(name)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(self.model)),
                *("--clip_model_path", str(self.mmproj), "--chat_format", "qwen2.5-vl"),
                *("--n_ctx", str(self.n_ctx), "--host", "127.0.0.1", "--port", str(self.port)),
                *("--model_alias", "tiny-vl", "--n_threads", "2"),
                *(("--embedding", "true") if self.embedding else ()),
            ],
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
        os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama_cpp.server did not listen within {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
