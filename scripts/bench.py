#!/usr/bin/env python3
"""`just bench`: masq's throughput next to baselines measured in the same run, on this machine.

Prints a table and writes docs/BENCHMARKS.md. Every figure is measured here and now; each
comparison runs in the same session against the same local services, and results are
reported as ratios, because absolute numbers on a shared 2-core machine drift.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASQ = ROOT / "target/release/masq"
CEILING = ROOT / "target/release/examples/sqs_ceiling"
PLUGIN = ROOT / "target/plugins/sha256-masker.wasm"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
DATABASE = os.environ.get("MASQ_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/masq_test")
MESSAGES = int(os.environ.get("MASQ_BENCH_MESSAGES", "20000"))


def sqs(action, payload):
    req = urllib.request.Request(
        ENDPOINT + "/",
        data=json.dumps(payload).encode(),
        headers={"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def new_queue(name):
    return sqs("CreateQueue", {"QueueName": f"{name}-{int(time.time() * 1000)}"})["QueueUrl"]


def run(args, **kw):
    out = subprocess.run(args, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def seed(queue, count):
    run([MASQ, "seed", "--queue-url", queue, "--count", str(count), "--seed", "42"])


def peak_rss_of(proc):
    """Polls /proc for the process's high-water mark until it exits; returns MiB."""
    peak = [0]

    def poll():
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except FileNotFoundError:
                break
            time.sleep(0.05)

    t = threading.Thread(target=poll)
    t.start()
    return t, peak


def bench_ceiling(loops):
    queue = new_queue("bench-ceiling")
    seed(queue, MESSAGES)
    result = json.loads(run([CEILING, queue, str(loops)]))
    assert result["messages"] == MESSAGES, result
    return result["per_second"]


def bench_masq():
    queue = new_queue("bench-masq")
    table = f"bench_{int(time.time())}"
    seed(queue, MESSAGES)
    run([MASQ, "db", "init", "--database-url", DATABASE, "--table", table])
    key = ROOT / "target/bench.key"
    if not key.exists():
        key.write_text(run([MASQ, "keygen"]))
        key.chmod(0o600)
    started = time.monotonic()
    proc = subprocess.Popen(
        [MASQ, "run", "--drain", "--plugin", PLUGIN, "--queue-url", queue, "--database-url", DATABASE,
         "--table", table, "--key-file", key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    poller, peak = peak_rss_of(proc)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    poller.join()
    if proc.returncode != 0:
        sys.exit(f"masq run failed:\n{stderr}")
    m = re.search(r"received (\d+), written (\d+), dead-lettered (\d+)", stdout)
    received, written, dead = map(int, m.groups())
    assert received == MESSAGES and written + dead == MESSAGES, stdout
    rows = int(run(["psql", DATABASE, "-tAc", f"SELECT count(*) FROM {table}"]).strip())
    assert rows == written, (rows, written)
    run(["psql", DATABASE, "-qc", f"DROP TABLE {table}; DELETE FROM masq.ledger WHERE target_table = '{table}'; "
         f"DELETE FROM masq.dead_letters WHERE target_table = '{table}'"])
    return {"per_second": received / seconds, "seconds": seconds, "peak_rss_mib": peak[0] / 1024,
            "written": written, "dead": dead}


def versions():
    def first_line(args):
        try:
            return subprocess.run(args, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fauxqs = json.loads((ROOT / "tools/sqs/package.json").read_text())["dependencies"]["fauxqs"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        "masq": first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "rustc": first_line(["rustc", "--version"]),
        "postgres": first_line(["psql", DATABASE, "-tAc", "SHOW server_version"]),
        "sqs": f"fauxqs {fauxqs} (in-memory, Node.js)",
    }


def main():
    info = versions()
    print(f"benchmarking with {MESSAGES} messages...", flush=True)
    ceilings = {loops: bench_ceiling(loops) for loops in (4, 8)}
    ceiling_loops, ceiling = max(ceilings.items(), key=lambda kv: kv[1])
    masq = bench_masq()
    rows = [
        ("SQS receive+delete ceiling (no processing), 4 loops", f"{ceilings[4]:,.0f} msg/s", ""),
        ("SQS receive+delete ceiling (no processing), 8 loops", f"{ceilings[8]:,.0f} msg/s", ""),
        ("masq run --drain (decode, wasm policy, COPY + ledger, delete)", f"{masq['per_second']:,.0f} msg/s",
         f"{masq['per_second'] / ceiling:.0%} of the best ceiling"),
        ("masq peak resident memory", f"{masq['peak_rss_mib']:.0f} MiB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>14}  {ratio}")

    doc = ROOT / "docs/BENCHMARKS.md"
    doc.parent.mkdir(exist_ok=True)
    lines = [
        "# Benchmarks",
        "",
        "Written by `just bench`; every figure below comes from one run on the machine named here.",
        "Compare ratios, not absolute numbers: the machine is shared and noisy.",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['machine']}",
        f"- masq: {info['masq']}, {info['rustc']}",
        f"- PostgreSQL: {info['postgres']}; SQS: {info['sqs']}",
        "",
        f"## End to end: {MESSAGES:,} synthetic login messages (about 1% malformed)",
        "",
        "| what | throughput | ratio |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {n} | {v} | {r} |" for n, v, r in rows]
    lines += [
        "",
        f"masq wrote {masq['written']:,} rows and {masq['dead']:,} dead letters in {masq['seconds']:.1f} s "
        f"(default settings: 4 receivers, 2 workers, batches of up to 100). The ceiling is the best of "
        f"{', '.join(map(str, ceilings))} concurrent receive+delete loops with nothing in between; both "
        "end the same way (a 1 s long poll that finds the queue empty).",
        "",
    ]
    doc.write_text("\n".join(lines))
    print(f"\nwrote {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
