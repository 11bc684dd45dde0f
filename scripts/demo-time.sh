#!/usr/bin/env bash
# The README's figure for `make demo` on a fresh clone: seconds from the command to the demo's first `[stats]` line.
# Clones this checkout's HEAD into a temporary folder (its own .venv), runs `make demo` there, stops it at the first
# statistics line and prints the time of each step. Usage: scripts/demo-time.sh [TIMEOUT_S] (default 600).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
limit="${1:-600}"
tmp="$(mktemp -d)"
trap 'pkill -f "$tmp/.venv/bin/livesight" 2>/dev/null || true; rm -rf "$tmp"' EXIT
git clone -q "$repo" "$tmp"
cd "$tmp"
start=$(date +%s.%N)
while IFS= read -r line; do
  t=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.1f", a - b }')
  case "$line" in
    *"WARNING: Location"*) ;;
    *".venv/bin/python -m pip"*|*"livesight demo"*) echo "$t s  $line" ;;
    "[stats]"*) echo "$t s  $line"; echo "first statistics line after $t s"; exit 0 ;;
  esac
done < <(timeout "$limit" make demo 2>&1)
echo "no statistics line within $limit s" >&2
exit 1
