#!/usr/bin/env bash
# Rehearse a backfill on the bundled sample data against the bundled fake Plain server.
# Creates .venv if needed, starts `backfill fake-plain` on 127.0.0.1, runs `backfill run`,
# prints the summary and stops the server. No account, no network beyond 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PORT=${BACKFILL_DEMO_PORT:-8765}
if [ ! -x .venv/bin/backfill ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e .
fi

log=$(mktemp)
# A generous, matching budget: 6000 requests a minute on both sides.
.venv/bin/backfill fake-plain --port "$PORT" --rate-limit 6000 --window 60 --api-key demo-key \
  > "$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do
  grep -q listening "$log" 2>/dev/null && break
  sleep 0.1
done
if ! grep -q listening "$log"; then
  echo "the fake Plain server did not start on port $PORT (set BACKFILL_DEMO_PORT):" >&2
  cat "$log" >&2
  exit 1
fi

PLAIN_API_KEY=demo-key .venv/bin/backfill run data/sample_activity.csv \
  --mapping data/mapping.toml \
  --api-url "http://127.0.0.1:$PORT/graphql/v1" \
  --rate 6000/min --concurrency 8 \
  --ledger "${BACKFILL_LEDGER:-.backfill/demo.sqlite}"
