#!/usr/bin/env bash
# The whole test suite, from scratch: a venv with the dev extra, a throwaway PostgreSQL,
# then format check, lint, type check and pytest. This is the command README.md gives
# and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${BACKFILL_TEST_VENV:-.venv}
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import backfill" 2>/dev/null; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# Azurite, Azure Blob Storage's emulator, for tests/integration/test_object_storage.py
# (a git-ignored folder; under CI=true those tests fail without it, never skip).
AZURITE=.cache/azurite/node_modules/.bin/azurite-blob
if [ ! -x "$AZURITE" ]; then
  if command -v npm >/dev/null; then
    npm install --prefix .cache/azurite --no-audit --no-fund --loglevel=error azurite@3
  else
    echo "npm not found: tests on Azure Blob Storage (Azurite) will not run" >&2
  fi
fi

# A throwaway PostgreSQL for the --source-sql tests (scripts/pg.sh), stopped on exit even
# when tests fail; a server named by BACKFILL_TEST_PG_URL is used as it is. Under CI=true
# those tests fail without one, never skip.
if [ -z "${BACKFILL_TEST_PG_URL:-}" ]; then
  if pg_env=$(bash scripts/pg.sh start); then
    eval "$pg_env"
    trap 'bash scripts/pg.sh stop "$BACKFILL_TEST_PG_DIR"' EXIT
  else
    echo "PostgreSQL could not be started: tests on --source-sql will skip (fail under CI=true)" >&2
  fi
fi

echo "== ruff format --check"
"$VENV/bin/ruff" format --check backfill tests scripts benchmarks examples
echo "== ruff check"
"$VENV/bin/ruff" check backfill tests scripts benchmarks examples
echo "== mypy"
"$VENV/bin/mypy"
echo "== lint-imports (the package's layers, pyproject.toml)"
"$VENV/bin/lint-imports" --no-cache
# Exit status 5 is "no tests collected": PYTEST ARGS naming only tests of the other part.
pytest_part() { "$VENV/bin/pytest" "$@" || [ $? -eq 5 ]; }
# The tests spread over the cores (one worker each), but those marked `timing` (pacing,
# rates, grace periods), which run after them one at a time: nothing competes for the
# CPU and the clock they measure.
echo "== pytest (in parallel)"
pytest_part -q -n auto --dist worksteal -m "not timing" --durations=10 "$@"
echo "== pytest (timing, one at a time)"
pytest_part -q -m timing --durations=5 "$@"
echo "== airflow (its own venv)"
bash scripts/test_airflow.sh
