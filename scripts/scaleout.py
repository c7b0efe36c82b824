#!/usr/bin/env python3
"""Scale-out: the same N messages drained by 1, 2 and 3 `masq run --drain` processes at once,
each on a queue and table of its own run, against the local services.

Prints a line per process count and, last, one JSON line:
  {"messages": N, "results": [{"processes": 1, "seconds": s, "per_second": r,
                                "received": [...], "duplicates": d}, ...]}
where seconds runs from starting the processes to the last one exiting, and the exactly-once
check (rows + dead letters + ledger) has passed for each run. bench.py calls it; it runs alone
too (after `just services plugins build`).

Environment: MASQ_SCALEOUT_MESSAGES (default 20000), MASQ_SCALEOUT_PROCESSES (default "1,2,3"),
MASQ_BENCH_DATABASE_URL, AWS_ENDPOINT_URL, MASQ_SCALEOUT_CONSUMER_ENDPOINT (the consumers' SQS
endpoint, e.g. tools/latency-proxy; default AWS_ENDPOINT_URL).
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import masq_sql

ROOT = Path(__file__).resolve().parent.parent
MASQ = ROOT / "target/release/masq"
PLUGIN = ROOT / "target/plugins/sha256-masker.wasm"
KEY = ROOT / "target/bench.key"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
DATABASE = os.environ.get("MASQ_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/masq_test")
MESSAGES = int(os.environ.get("MASQ_SCALEOUT_MESSAGES", "20000"))
PROCESSES = [int(p) for p in os.environ.get("MASQ_SCALEOUT_PROCESSES", "1,2,3").split(",")]
ENV = {**os.environ, "AWS_ENDPOINT_URL": ENDPOINT, "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
       "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
       "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test")}


# The consumers may talk to SQS through a proxy (bench.py's "SQS at 20 ms"); seeding, checks
# and clean-up go straight to the server.
CONSUMER_ENV = {**ENV, "AWS_ENDPOINT_URL": os.environ.get("MASQ_SCALEOUT_CONSUMER_ENDPOINT", ENDPOINT)}


def sqs(action, payload):
    req = urllib.request.Request(
        ENDPOINT + "/",
        data=json.dumps(payload).encode(),
        headers={"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def run(args):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def psql(sql):
    return run(["psql", DATABASE, "-tAc", sql]).strip()


def one_run(processes):
    stamp = int(time.time() * 1000)
    queue = sqs("CreateQueue", {"QueueName": f"scaleout-{processes}-{stamp}"})["QueueUrl"]
    table = f"scaleout_{processes}_{stamp}"
    sent = run([MASQ, "seed", "--queue-url", queue, "--count", MESSAGES, "--seed", "42"])
    malformed = int(re.search(r"\((\d+) malformed", sent).group(1))
    run([MASQ, "db", "init", "--database-url", DATABASE, "--table", table])
    args = [MASQ, "run", "--drain", "--plugin", PLUGIN, "--queue-url", queue, "--database-url", DATABASE,
            "--table", table, "--key-file", KEY]
    started = time.monotonic()
    procs = [subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=CONSUMER_ENV) for _ in range(processes)]
    outputs = [p.communicate() for p in procs]
    seconds = time.monotonic() - started
    for p, (_, err) in zip(procs, outputs):
        if p.returncode != 0:
            sys.exit(f"masq run failed:\n{err}")
    summaries = [out for out, _ in outputs]
    received = [int(re.search(r"received (\d+)", s).group(1)) for s in summaries]
    duplicates = sum(int(re.search(r"duplicates skipped (\d+)", s).group(1)) for s in summaries)

    # Exactly once, or the number means nothing.
    rows = int(psql(f"SELECT count(*) FROM {table}"))
    distinct = int(psql(f"SELECT count(DISTINCT user_id) FROM {table}"))
    ledger = int(psql(masq_sql.ledger_count(table)))
    dead = int(psql(f"SELECT count(*) FROM masq.dead_letters WHERE target_table = '{table}'"))
    ok = rows == distinct == MESSAGES - malformed and ledger == MESSAGES and dead == malformed
    if not ok:
        sys.exit(f"{processes} processes: rows {rows} ({distinct} distinct), ledger {ledger}, dead {dead}; "
                 f"expected {MESSAGES - malformed} rows, {malformed} dead letters")
    psql(masq_sql.forget(table))
    sqs("DeleteQueue", {"QueueUrl": queue})
    return {"processes": processes, "seconds": round(seconds, 3), "per_second": round(MESSAGES / seconds, 1),
            "received": received, "duplicates": duplicates}


def main():
    if not KEY.exists():
        KEY.write_text(run([MASQ, "keygen"]))
        KEY.chmod(0o600)
    results = []
    for processes in PROCESSES:
        r = one_run(processes)
        results.append(r)
        print(f"{processes} process(es): {r['per_second']:,.0f} messages/s ({MESSAGES:,} in {r['seconds']:.2f} s; "
              f"received per process {r['received']})", flush=True)
    print(json.dumps({"messages": MESSAGES, "results": results}))


if __name__ == "__main__":
    main()
