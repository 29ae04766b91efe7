#!/usr/bin/env bash
# The Airflow tests (tests/airflow), in a venv of their own: Airflow is too heavy and pins
# too much to share the main test environment. scripts/test.sh runs this as its last step.
#
#   bash scripts/test_airflow.sh [PYTEST ARGS...]
#
# The venv (.cache/airflow-venv, git-ignored) is made once; Airflow's home is a temp
# folder, migrated afresh each time. The PostgreSQL ledger tests use the server
# BACKFILL_TEST_PG_URL names (scripts/test.sh starts one); under CI=true they fail
# without it, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

AIRFLOW_VERSION=3.1.8
PYTHON=${PYTHON:-python3}
VENV=${BACKFILL_AIRFLOW_VENV:-.cache/airflow-venv}
if [ ! -x "$VENV/bin/airflow" ] || ! "$VENV/bin/python" -c "import pytest_timeout" 2>/dev/null ||
  [ "$("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)' 2>/dev/null)" != "$AIRFLOW_VERSION" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "apache-airflow==$AIRFLOW_VERSION" pytest pytest-timeout
fi
# The project itself, editable (the tests run the working tree's code), with its SQL extra.
"$VENV/bin/python" -m pip install -qq -e ".[sql]"

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
# the pytest-asyncio options of pyproject.toml.
"$VENV/bin/pytest" -q -p no:cacheprovider --confcutdir tests/airflow \
  -W "ignore:Unknown config option:pytest.PytestConfigWarning" tests/airflow "$@"
