#!/usr/bin/env bash
# A private PostgreSQL for the chaos tests (tests/chaos/), in target/chaos-pg, so that stopping
# it hard never disturbs anything using the shared server on 5432.
#
#   scripts/chaos-pg.sh start     initdb if needed, start, print the connection URL
#   scripts/chaos-pg.sh crash     stop it the hard way (pg_ctl stop -m immediate: no checkpoint,
#                                 every backend killed, crash recovery on the next start)
#   scripts/chaos-pg.sh restart   crash, then start again
#   scripts/chaos-pg.sh stop      a clean stop (when you are done)
#   scripts/chaos-pg.sh url       print the connection URL
#
# Port: CHAOS_PG_PORT, or 5499, or the next free one; remembered in target/chaos-pg/port.
# Safe to run again; concurrent callers wait on a lock.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$PWD/target/chaos-pg
data=$dir/data
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql; run scripts/services.sh" >&2; exit 1; }

mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port() {
  if [ ! -s "$dir/port" ]; then
    local p=${CHAOS_PG_PORT:-5499}
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p" >"$dir/port"
  fi
  cat "$dir/port"
}

url() { echo "postgres://postgres@127.0.0.1:$(port)/masq_chaos"; }

running() { as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

init() {
  [ -s "$data/PG_VERSION" ] && return
  rm -rf "$data"
  mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir" "$data"; fi
  as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  # fsync off: the chaos tests kill processes, never the machine, and a committed transaction's
  # WAL is written to the kernel before COMMIT returns, so a killed server still loses nothing
  # it acknowledged. synchronous_commit stays on, which is what makes that true.
  cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
logging_collector = off
EOF
}

start() {
  init
  if ! running; then
    # A port taken since last time (another program) moves us to a free one.
    if ! port_free "$(port)"; then rm -f "$dir/port"; fi
    as_pg "$bin/pg_ctl" -D "$data" -o "-p $(port)" -l "$dir/server.log" -w -t 60 start </dev/null >/dev/null 9>&-
  fi
  for _ in $(seq 1 100); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$(port)" -U postgres && break
    sleep 0.1
  done
  psql -h 127.0.0.1 -p "$(port)" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'masq_chaos'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$(port)" -U postgres -qc "CREATE DATABASE masq_chaos"
}

crash() {
  if running; then as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null; fi
}

case "${1:-}" in
  start) start; url ;;
  crash) crash ;;
  restart) crash; start; url ;;
  stop) if running; then as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi ;;
  url) url ;;
  *) echo "usage: $0 start|crash|restart|stop|url" >&2; exit 2 ;;
esac
