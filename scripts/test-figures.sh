#!/usr/bin/env bash
# The figures the README gives about the test suite, from the suite itself: how many tests there are (all, and those
# `make test-quick` runs), and the wall time of `make test`'s pytest run on this machine. Usage: scripts/test-figures.sh
# [WORKERS]. Run by `make test-figures`.
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${1:-4}"
py=.venv/bin/python
count() { $py -m pytest -q -p no:cacheprovider --collect-only "$@" 2>/dev/null | grep -E '^[0-9]+ tests? collected|collected' | tail -1; }
echo "cores: $(nproc)"
echo "all tests (make test):          $(count)"
echo "not slow (make test-quick):     $(count -m 'not slow')"
start=$(date +%s)
$py -m pytest -q -p no:cacheprovider -n "$workers" --dist loadgroup | tail -3
end=$(date +%s)
echo "make test's pytest wall time:   $((end - start)) s with $workers workers"
