#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the tests and export CLINSEEK_TEST_PG_DSN.
# Meant to be `source`d (by .ci/run, or by hand: `source .ci/start_postgres.sh`). Idempotent: a second run finds
# the running server and only exports the DSN. Installs Debian's postgresql package when no server binaries exist.
# The server runs as a non-root user (postgres when root runs this), with trust authentication on 127.0.0.1 only.

_clinseek_pg_main() {
  local port="${CLINSEEK_PG_PORT:-54329}"
  local db="${CLINSEEK_PG_DB:-clinseek_test}"
  local data="${CLINSEEK_PG_DATA:-/tmp/clinseek-pg-${port}}"
  local bindir=""

  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && bindir="$d"
  done
  if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
    bindir="$(dirname "$(command -v initdb)")"
  fi
  if [ -z "$bindir" ]; then
    echo "start_postgres: installing Debian's postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null || return 1
    for d in /usr/lib/postgresql/*/bin; do
      [ -x "$d/initdb" ] && bindir="$d"
    done
    [ -n "$bindir" ] || { echo "start_postgres: no initdb after installing postgresql" >&2; return 1; }
  fi

  # PostgreSQL refuses to run as root: run it as `postgres` (created by the package) or the current user.
  local runas=()
  local owner
  owner="$(id -un)"
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres || return 1
    owner=postgres
    if command -v runuser >/dev/null 2>&1; then runas=(runuser -u postgres --); else runas=(su postgres -s /bin/sh -c); fi
  fi
  _pg() { if [ ${#runas[@]} -gt 0 ] && [ "${runas[0]}" = "su" ]; then "${runas[@]}" "$*"; else "${runas[@]}" "$@"; fi; }

  if ! "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data" && chown "$owner" "$data" && chmod 700 "$data" || return 1
      _pg "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null ||
        _pg "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync -E UTF8 >/dev/null || return 1
    fi
    _pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null || { tail -20 "$data/server.log" >&2; return 1; }
  fi
  local exists
  exists="$("$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'")" || return 1
  if [ "$exists" != "1" ]; then
    "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE $db" || return 1
  fi
  export CLINSEEK_TEST_PG_DSN="postgresql://postgres@127.0.0.1:${port}/${db}"
  echo "start_postgres: $CLINSEEK_TEST_PG_DSN (data in $data)" >&2
}

_clinseek_pg_main
_clinseek_pg_status=$?
unset -f _clinseek_pg_main _pg
if [ "$_clinseek_pg_status" -ne 0 ]; then
  echo "start_postgres: failed" >&2
fi
# shellcheck disable=SC2317
return "$_clinseek_pg_status" 2>/dev/null || exit "$_clinseek_pg_status"
