#!/usr/bin/env bash
# A throwaway PostgreSQL on 127.0.0.1 for the tests (trust auth but for the role
# `backfill_secret`, which needs its password; its own temp folder).
#
#   eval "$(bash scripts/pg.sh start)"   # sets BACKFILL_TEST_PG_URL and BACKFILL_TEST_PG_DIR
#   bash scripts/pg.sh stop "$BACKFILL_TEST_PG_DIR"
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (and
# the `postgresql` package is installed when its binaries are missing). `start` prints the
# two variables on stdout and everything else on stderr; it fails when no server can start.
set -euo pipefail

find_bin() {
  local dir
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    # /usr/local/bin may hold links to pg_ctl and initdb only: createdb lives beside the real ones.
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
      return
    fi
  done
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin dir user port
  if ! bin=$(find_bin); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing the postgresql package" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
      bin=$(find_bin)
    else
      echo "pg_ctl and initdb not found: install PostgreSQL" >&2
      return 1
    fi
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/backfill-pg.XXXXXX")
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    user=postgres
  else
    user=$(id -un)
  fi
  port=$(free_port)
  as_owner "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust --encoding=UTF8 \
    --no-locale >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  }
  # One role must give its password, so that tests can see a wrong one refused.
  as_owner sed -i '1i host all backfill_secret 127.0.0.1/32 scram-sha-256' "$dir/data/pg_hba.conf"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 || {
    cat "$dir/server.log" >&2
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    return 1
  }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" backfill_test >&2 || {
    stop "$dir"
    return 1
  }
  echo "export BACKFILL_TEST_PG_URL=postgresql+psycopg://$user@127.0.0.1:$port/backfill_test"
  echo "export BACKFILL_TEST_PG_DIR=$dir"
}

stop() {
  local dir=${1:?usage: pg.sh stop DIR}
  local bin
  if [ -d "$dir/data" ] && bin=$(find_bin); then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*)
  echo "usage: $0 start | stop DIR" >&2
  exit 2
  ;;
esac
