# masq: every way to build, run, test and benchmark. Each recipe is safe to run again.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Local services (see scripts/services.sh). Real AWS settings in the environment win.
export AWS_ENDPOINT_URL := env_var_or_default("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
export AWS_REGION := env_var_or_default("AWS_REGION", "us-east-1")
export AWS_ACCESS_KEY_ID := env_var_or_default("AWS_ACCESS_KEY_ID", "test")
export AWS_SECRET_ACCESS_KEY := env_var_or_default("AWS_SECRET_ACCESS_KEY", "test")
export MASQ_TEST_DATABASE_URL := env_var_or_default("MASQ_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/masq_test")
demo_db := "postgres://postgres@127.0.0.1:5432/masq_demo"
masq := "target/release/masq"

# List the recipes.
default:
    @just --list

# Start PostgreSQL, PgBouncer (transaction pooling) and the local SQS server, installing them when missing.
services:
    scripts/services.sh

# Build every policy into target/plugins/<name>.wasm.
plugins:
    scripts/build-plugins.sh

# Build the masq binary (release: the demo, tests and benchmarks share one build).
build:
    cargo build --release --locked -p masq

# The whole job on the real login data set: queue -> policy -> PostgreSQL, then show rows.
demo: services plugins build
    #!/usr/bin/env bash
    set -euo pipefail
    queue=$(curl -s -X POST -H 'X-Amz-Target: AmazonSQS.CreateQueue' \
      -H 'Content-Type: application/x-amz-json-1.0' -d '{"QueueName":"login-queue"}' \
      "$AWS_ENDPOINT_URL/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["QueueUrl"])')
    [ -s target/demo.key ] || (umask 077 && {{masq}} keygen > target/demo.key)
    {{masq}} db init --database-url {{demo_db}}
    # A re-run shows the same result: start from an empty queue and table.
    curl -s -o /dev/null -X POST -H 'X-Amz-Target: AmazonSQS.PurgeQueue' \
      -H 'Content-Type: application/x-amz-json-1.0' -d "{\"QueueUrl\":\"$queue\"}" "$AWS_ENDPOINT_URL/"
    psql -q {{demo_db}} -c "TRUNCATE user_logins; DELETE FROM masq.ledger WHERE target = (SELECT id FROM masq.targets WHERE name = 'user_logins'); DELETE FROM masq.dead_letters WHERE target_table = 'user_logins'"
    {{masq}} seed --queue-url "$queue" --file tests/fixtures/fetch-login-queue/messages.jsonl
    {{masq}} run --plugin target/plugins/sha256-masker.wasm --queue-url "$queue" \
      --database-url {{demo_db}} --key-file target/demo.key --drain
    psql {{demo_db}} -c "SELECT * FROM user_logins ORDER BY create_date DESC, user_id LIMIT 5"
    psql {{demo_db}} -c "SELECT count(*) AS rows, count(DISTINCT masked_ip) AS distinct_ips, count(*) FILTER (WHERE locale IS NULL) AS null_locales FROM user_logins"
    psql {{demo_db}} -c "SELECT message_id, stage, reason FROM masq.dead_letters ORDER BY id DESC LIMIT 5"
    echo "Query the rows yourself: psql {{demo_db}}"

# Every test: unit tests, then integration tests against real PostgreSQL and SQS, then the
# short chaos suite. Test binaries: masq's unit tests, `integration`, `chaos`, and the unit
# tests of the three policies that have them (natively); nothing is built twice.
test: services plugins
    cargo test --release --locked -p masq --lib --test integration --test chaos
    cargo test --release --locked -p sha256-masker -p seal-masker -p rust-template --lib

# The crash-and-fault suite at full size: kill -9, PostgreSQL crashes, SQS faults, a slow
# policy, three consumers (tests/chaos/; `just test` runs its short form).
chaos: services plugins
    MASQ_CHAOS=full cargo test --release --locked -p masq --test chaos -- --nocapture

# Throughput against the SQS server's own ceiling; writes docs/BENCHMARKS.md.
bench: services plugins
    cargo build --release --locked -p masq -p latency-proxy --bins --examples
    python3 scripts/bench.py

# E.g. `just bench-compare e463f85 ddf15ff` (before and after the restructuring; AFTER may be `.`,
# this checkout). See scripts/bench-compare.sh and docs/BENCHMARKS-restructure.md.
# The benches of two revisions back to back, each figure of AFTER next to BEFORE's.
bench-compare before after: services
    scripts/bench-compare.sh {{before}} {{after}}

# cargo-fuzz needs nightly -Z flags: this runs on the stable toolchain with RUSTC_BOOTSTRAP=1,
# with the address sanitizer. Own target dir (fuzz/target). Seeds: fuzz/seeds (committed); the
# grown corpus (fuzz/corpus) and any crash (fuzz/artifacts/decode_body) stay local.
# Fuzz decode_body (untrusted message body -> record fields) for `seconds`; see docs/fuzzing.md.
fuzz seconds="600":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
    mkdir -p fuzz/corpus/decode_body
    RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run --fuzz-dir fuzz --target-dir fuzz/target \
      --sanitizer address --debug-assertions decode_body fuzz/corpus/decode_body fuzz/seeds/decode_body \
      -- -max_total_time={{seconds}} -timeout=10 -dict=fuzz/decode_body.dict -print_final_stats=1
