#!/usr/bin/env bash
# The whole test suite, from scratch: a venv with the dev extra, a throwaway PostgreSQL,
# then format check, lint, type check and pytest. This is the command README.md gives
# and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Set-up that waits on the network runs side by side: Airflow's venv (for
# scripts/test_airflow.sh) and Azurite are made while pip installs the dev extra. Their
# output goes to .cache (git-ignored), shown only when they fail.
mkdir -p .cache
background=()
on_exit() {
  # A failing step must not leave set-up running behind the script.
  if [ "${#background[@]}" -gt 0 ]; then
    wait "${background[@]}" 2>/dev/null || true
  fi
  if [ -n "${pg_dir:-}" ]; then
    bash scripts/pg.sh stop "$pg_dir"
  fi
}
trap on_exit EXIT
finish() {
  local pid=$1 log=$2
  wait "$pid" || {
    cat "$log" >&2
    exit 1
  }
}
bash scripts/airflow_venv.sh >.cache/airflow-venv.log 2>&1 &
airflow_venv=$!
background+=("$airflow_venv")

PYTHON=${PYTHON:-python3}
VENV=${BACKFILL_TEST_VENV:-.venv}
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import backfill" 2>/dev/null; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Azurite, Azure Blob Storage's emulator, for tests/integration/test_object_storage.py
# (a git-ignored folder; under CI=true those tests fail without it, never skip).
AZURITE=.cache/azurite/node_modules/.bin/azurite-blob
azurite=""
if [ ! -x "$AZURITE" ]; then
  if command -v npm >/dev/null; then
    npm install --prefix .cache/azurite --no-audit --no-fund --loglevel=error azurite@3 \
      >.cache/azurite-install.log 2>&1 &
    azurite=$!
    background+=("$azurite")
  else
    echo "npm not found: tests on Azure Blob Storage (Azurite) will not run" >&2
  fi
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
if [ -n "$azurite" ]; then
  finish "$azurite" .cache/azurite-install.log
fi

# A throwaway PostgreSQL for the --source-sql tests (scripts/pg.sh), stopped on exit even
# when tests fail; a server named by BACKFILL_TEST_PG_URL is used as it is. Under CI=true
# those tests fail without one, never skip.
if [ -z "${BACKFILL_TEST_PG_URL:-}" ]; then
  if pg_env=$(bash scripts/pg.sh start); then
    eval "$pg_env"
    pg_dir=$BACKFILL_TEST_PG_DIR
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
# The tests spread over the cores, two workers a core (many of them wait on subprocesses,
# sockets or a paced fake Plain), and the Airflow suite (scripts/test_airflow.sh, its own
# venv) runs beside them; its output follows theirs. Then the tests marked `timing`
# (pacing, rates, grace periods) run one at a time: nothing competes for the CPU and the
# clock they measure.
finish "$airflow_venv" .cache/airflow-venv.log
bash scripts/test_airflow.sh >.cache/airflow-tests.log 2>&1 &
airflow_tests=$!
background+=("$airflow_tests")
echo "== pytest (in parallel; the Airflow suite beside it)"
pytest_part -q -n "$((2 * $(nproc)))" --dist worksteal -m "not timing" --durations=10 "$@"
echo "== airflow (its own venv)"
finish "$airflow_tests" .cache/airflow-tests.log
cat .cache/airflow-tests.log
echo "== pytest (timing, one at a time)"
pytest_part -q -m timing --durations=5 "$@"
