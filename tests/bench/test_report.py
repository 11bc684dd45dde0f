"""The report keeps the GPU figures (DOCS/bench/gpu, written by scripts/gpu-bench.sh) when CPU figures are rerun."""

from __future__ import annotations

import json
from pathlib import Path

from livesight.bench.report import write_report


def _bench(path: Path, name: str, gpu: str | None, rows: list[dict[str, float]]) -> None:
    machine = {"cpu": "x86_64", "cores": 2, "torch": "2.13.0+cpu"} | ({"gpu": gpu} if gpu else {})
    data = {"benchmark": name, "machine": machine, "seconds": 1.0, "summary": rows, "notes": [f"{name} note"]}
    (path / f"{name}.json").write_text(json.dumps(data))


def test_cpu_regeneration_keeps_the_gpu_part(tmp_path: Path) -> None:
    out, docs = tmp_path / "out", tmp_path / "docs"
    gpu = docs / "bench" / "gpu"
    out.mkdir()
    gpu.mkdir(parents=True)
    _bench(out, "dtd", None, [{"clip": 1.0}])
    _bench(gpu, "dtd", "NVIDIA H200", [{"clip": 2.0}])
    (gpu / "NOTES.md").write_text("Lent for 15 minutes.\n")
    text = write_report(out, docs).read_text()
    cpu_part, _, gpu_part = text.partition("# On a GPU")
    assert "## Differential Token Dropping" in cpu_part and "GPU NVIDIA H200" not in cpu_part
    assert "## GPU: Differential Token Dropping" in gpu_part and "GPU NVIDIA H200" in gpu_part
    assert "Lent for 15 minutes." in gpu_part
    assert "--device cuda --shape 7b" in gpu_part
    assert (docs / "bench" / "dtd.json").is_file()  # the CPU JSON is copied beside, the GPU dir left as it was
    assert json.loads((gpu / "dtd.json").read_text())["summary"] == [{"clip": 2.0}]


def test_no_gpu_part_without_gpu_figures(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _bench(out, "dtd", None, [{"clip": 1.0}])
    assert "On a GPU" not in write_report(out, tmp_path / "docs").read_text()


def test_one_benchmark_run_alone_joins_the_report(tmp_path: Path) -> None:
    """`livesight bench gateway --docs DOCS`: its section is added, the other benchmarks' figures stay as they were."""
    from livesight.bench.report import add_to_report

    docs, out = tmp_path / "docs", tmp_path / "out"
    (docs / "bench").mkdir(parents=True)
    out.mkdir()
    _bench(docs / "bench", "dtd", None, [{"clip": 1.0}])
    _bench(out, "gateway", None, [{"setup": "5,000 cameras", "upstream connections per node (max)": 1}])
    text = add_to_report(out / "gateway.json", docs).read_text()
    assert "## Differential Token Dropping" in text and "| 1 |" in text
    assert "## Fleet gateway" in text and "| 5,000 cameras | 1 |" in text
    assert (docs / "bench" / "gateway.json").is_file()
