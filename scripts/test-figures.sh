#!/usr/bin/env bash
# The figures the README gives about the test suite, from the suite itself: how many tests there are (all, and those
# `make test-quick` runs), and the wall time of `make test`'s two pytest runs (the `serial` tests alone, then the rest
# in WORKERS pytest-xdist workers) on this machine. Usage: scripts/test-figures.sh [WORKERS] (`make test-figures`).
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${1:-4}"
py=.venv/bin/python
count() { $py -m pytest -q -p no:cacheprovider --collect-only "$@" 2>/dev/null | grep -E 'tests? collected|selected' | tail -1; }
echo "cores: $(nproc), workers: $workers"
echo "all tests (make test):       $(count)"
echo "not slow (make test-quick):  $(count -m 'not slow')"
t0=$(date +%s)
$py -m pytest -q -p no:cacheprovider -m serial | tail -1
t1=$(date +%s)
$py -m pytest -q -p no:cacheprovider -n "$workers" --dist loadgroup -m "not serial" | tail -1
t2=$(date +%s)
$py -m pytest -q -p no:cacheprovider -n "$workers" --dist loadgroup -m "not slow" | tail -1
t3=$(date +%s)
echo "make test: pytest wall time $((t2 - t0)) s (serial part $((t1 - t0)) s, parallel part $((t2 - t1)) s)"
echo "make test-quick: pytest wall time $((t3 - t2)) s"
