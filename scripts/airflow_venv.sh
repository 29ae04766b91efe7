#!/usr/bin/env bash
# The venv of the Airflow tests (.cache/airflow-venv, git-ignored): Airflow, pytest and
# every dependency of theirs pinned by scripts/airflow-constraints.txt, and the project
# itself, editable, with its SQL extra. scripts/test_airflow.sh runs this first;
# scripts/test.sh starts it early, beside its own set-up.
#
#   bash scripts/airflow_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONSTRAINTS=scripts/airflow-constraints.txt
PYTHON=${PYTHON:-python3}
VENV=${BACKFILL_AIRFLOW_VENV:-.cache/airflow-venv}
# A venv made from other pins, or before a pin changed, is made again.
if [ ! -x "$VENV/bin/airflow" ] || ! cmp -s "$CONSTRAINTS" "$VENV/constraints.txt"; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --constraint "$CONSTRAINTS" \
    apache-airflow pytest pytest-timeout
  cp "$CONSTRAINTS" "$VENV/constraints.txt"
fi
# The tests run the working tree's code.
"$VENV/bin/python" -m pip install -qq -e ".[sql]"
