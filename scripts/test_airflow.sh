#!/usr/bin/env bash
# The Airflow tests (tests/airflow), in a venv of their own: Airflow is too heavy and pins
# too much to share the main test environment. scripts/test.sh runs this beside the main
# tests that run in parallel.
#
#   bash scripts/test_airflow.sh [PYTEST ARGS...]
#
# The venv (.cache/airflow-venv, git-ignored) is made once, by scripts/airflow_venv.sh
# from the pins of scripts/airflow-constraints.txt; Airflow's home is a temp folder,
# migrated afresh each time. The PostgreSQL ledger tests use the server
# BACKFILL_TEST_PG_URL names (scripts/test.sh starts one); under CI=true they fail
# without it, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/airflow_venv.sh
VENV=${BACKFILL_AIRFLOW_VENV:-.cache/airflow-venv}

AIRFLOW_HOME=$(mktemp -d "${TMPDIR:-/tmp}/backfill-airflow.XXXXXX")
trap 'rm -rf "$AIRFLOW_HOME"' EXIT
export AIRFLOW_HOME
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/examples/airflow"
"$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || {
  cat "$AIRFLOW_HOME/migrate.log" >&2
  exit 1
}

# --confcutdir: tests/conftest.py belongs to the main suite (and its dependencies); so do
# the pytest-asyncio options of pyproject.toml. Each test takes well under 30 s (a failed
# try is retried at once): --timeout stops one that hangs long before pyproject's 300 s.
"$VENV/bin/pytest" -q -p no:cacheprovider --confcutdir tests/airflow --timeout 120 \
  -W "ignore:Unknown config option:pytest.PytestConfigWarning" tests/airflow "$@"
