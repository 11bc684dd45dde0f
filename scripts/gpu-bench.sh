#!/usr/bin/env bash
# GPU figures: the dtd, memory and end-to-end benchmarks with a 7B-shaped random-weight Qwen2.5-VL in bf16 on CUDA.
#   bash scripts/gpu-bench.sh [OUT_DIR]        (default bench-out-gpu; needs an NVIDIA GPU with >= 40 GB)
# Writes OUT_DIR/{dtd,memory,e2e}.json, PNG plots and OUT_DIR/benchmarks.md; copy the tables into
# docs/benchmarks.md's GPU section with the GPU named (the JSON records it under "machine").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out-gpu}
BIN=.venv/bin
if ! "$BIN/python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-bench: no CUDA device visible to torch (install a CUDA build of torch on the GPU machine)" >&2
  exit 2
fi
mkdir -p "$OUT"
for b in dtd memory e2e; do
  "$BIN/livesight" bench "$b" --device cuda --shape 7b --out "$OUT"
done
"$BIN/python" -c "from livesight.bench.report import write_report; print(write_report('$OUT'))"
