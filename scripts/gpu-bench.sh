#!/usr/bin/env bash
# GPU figures: the dtd, memory and end-to-end benchmarks with a 7B-shaped random-weight Qwen2.5-VL in bf16 on CUDA.
#   bash scripts/gpu-bench.sh [OUT_DIR]        (default bench-out-gpu; needs an NVIDIA GPU with >= 40 GB)
# PYTHON picks the interpreter (default .venv/bin/python; one whose torch sees CUDA); MEMORY_FLAGS is passed to the
# memory benchmark (e.g. --quick: streams of 1/2/4 min instead of 1/10/60).
# Writes OUT_DIR/{dtd,memory,e2e}.json, PNG plots and OUT_DIR/benchmarks.md. To publish them, copy OUT_DIR's JSON
# and PNG files into docs/bench/gpu/: `livesight bench all --docs docs` then renders them as docs/benchmarks.md's
# "On a GPU" part (livesight/bench/report.py), beside the CPU figures.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out-gpu}
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-bench: no CUDA device visible to torch (install a CUDA build of torch on the GPU machine)" >&2
  exit 2
fi
mkdir -p "$OUT"
for b in dtd e2e; do
  "$PY" -m livesight bench "$b" --device cuda --shape 7b --out "$OUT"
done
# shellcheck disable=SC2086
"$PY" -m livesight bench memory --device cuda --shape 7b --out "$OUT" ${MEMORY_FLAGS:-}
"$PY" -c "from livesight.bench.report import write_report; print(write_report('$OUT'))"
