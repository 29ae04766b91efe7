#!/usr/bin/env bash
# The whole test suite, from scratch: a venv with the dev extra, then format check,
# lint, type check and pytest. This is the command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${BACKFILL_TEST_VENV:-.venv}
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import backfill" 2>/dev/null; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"

echo "== ruff format --check"
"$VENV/bin/ruff" format --check backfill tests scripts benchmarks
echo "== ruff check"
"$VENV/bin/ruff" check backfill tests scripts benchmarks
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
"$VENV/bin/pytest" -q "$@"
