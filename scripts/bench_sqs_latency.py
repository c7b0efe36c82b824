"""`just bench`, section "SQS at 20 ms": every figure through tools/latency-proxy, which delays
each request to the local SQS server by a round trip drawn from a lognormal distribution
(median 20 ms, 99th percentile 100 ms: a consumer in the same AWS region), and counts the
SQS calls (SQS bills per request). Imported by bench.py, which passes its helpers in.

Measured in one run, all through the same proxy:
- the ceiling: receive 10 + delete 10 loops, no processing, with enough loops to saturate;
- masq with default settings (`--receivers auto`);
- masq with fixed `--receivers` from a sweep, and the best of them (it and the default: the
  median of several alternating runs);
- the boto3 + psycopg2 baseline;
- SQS requests per 1,000 messages for masq and the baseline;
- the idle request rate of masq on an empty queue (requests per minute);
- 1, 2 and 3 masq processes on one queue (scripts/scaleout.py), exactly once checked.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

# 60,000: at 20 ms masq moves about 10,000 a second; fewer would measure mostly the ramp of
# the receivers and the drain's last empty receive, not the steady state.
MESSAGES = int(os.environ.get("MASQ_BENCH_LATENCY_MESSAGES", "60000"))
SWEEP = [int(n) for n in os.environ.get("MASQ_BENCH_LATENCY_SWEEP", "8,16,32,64").split(",")]
IDLE_SECONDS = int(os.environ.get("MASQ_BENCH_IDLE_SECONDS", "60"))


class Proxy:
    """tools/latency-proxy in front of the SQS server, for one section."""

    def __init__(self, root, upstream):
        binary = root / "target/release/latency-proxy"
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        self.proc = subprocess.Popen([str(binary), "--upstream", host_port, "--median-ms", "20", "--p99-ms", "100"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        # "latency-proxy listening on 127.0.0.1:P, control on 127.0.0.1:C, forwarding to ..."
        parts = line.split()
        self.endpoint = "http://" + parts[3].rstrip(",")
        self.control = "http://" + parts[6].rstrip(",")

    def stats(self):
        with urllib.request.urlopen(self.control + "/stats") as r:
            return json.load(r)

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(self.control + "/reset", data=b"", method="POST")).read()

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def requests_per_1000(stats, messages):
    return 1000 * stats["total"] / max(messages, 1)


def bench_sqs_latency(h):
    """`h`: bench.py's helpers (new_queue, new_table, seed, run, masq_drain, key, ...)."""
    proxy = Proxy(h.ROOT, h.ENDPOINT)
    through = {"AWS_ENDPOINT_URL": proxy.endpoint}
    try:
        ceilings = {}
        for loops in (64, 128):
            queue = h.new_queue("lat-ceiling")
            h.seed(queue, MESSAGES)
            result = json.loads(h.run([h.EXAMPLES / "sqs_ceiling", queue, loops], env={**h.ENV, **through}))
            assert result["messages"] == MESSAGES, result
            ceilings[loops] = result["per_second"]

        def masq(extra=()):
            queue = h.new_queue("lat-masq")
            table = h.new_table("lat")
            h.seed(queue, MESSAGES)
            proxy.reset()
            r = h.masq_drain(queue, table, extra=extra, env=through)
            assert r["received"] == MESSAGES, r
            r["requests_per_1000"] = requests_per_1000(proxy.stats(), MESSAGES)
            return r

        fixed = {n: masq(("--receivers", str(n))) for n in SWEEP}
        # The default against the best of the sweep, alternating, each the median of REPEATS
        # runs (the best's sweep run among them): one run of each is within the noise of the
        # 80% target, and the best of four single runs is biased up.
        best_n = max(fixed, key=lambda n: fixed[n]["per_second"])
        defaults, bests = [], [fixed[best_n]]
        for _ in range(h.REPEATS):
            defaults.append(masq())
            if len(bests) < h.REPEATS:
                bests.append(masq(("--receivers", str(best_n))))
        default = h.median_run(defaults)
        default["samples"] = [r["per_second"] for r in defaults]
        fixed[best_n] = h.median_run(bests)
        fixed[best_n]["samples"] = [r["per_second"] for r in bests]

        python = h.run([h.ROOT / "scripts/baseline_venv.sh"]).strip().splitlines()[-1]
        queue = h.new_queue("lat-baseline")
        table = h.new_table("latbase")
        h.seed(queue, h.BASELINE_MESSAGES)
        proxy.reset()
        baseline = json.loads(h.run([python, h.ROOT / "scripts/baseline_consumer.py", "--queue-url", queue,
                                     "--database-url", h.DATABASE, "--table", table],
                                    env={**h.ENV, **through}).strip().splitlines()[-1])
        baseline["requests_per_1000"] = requests_per_1000(proxy.stats(), baseline["messages"])

        idle = idle_rate(h, proxy, through)

        scale = json.loads(h.run([sys.executable, h.ROOT / "scripts/scaleout.py"],
                                 env={**h.ENV, "MASQ_SCALEOUT_CONSUMER_ENDPOINT": proxy.endpoint,
                                      "MASQ_SCALEOUT_MESSAGES": str(MESSAGES)}).strip().splitlines()[-1])
    finally:
        proxy.close()
    return {"messages": MESSAGES, "ceilings": ceilings, "default": default, "fixed": fixed, "best_n": best_n,
            "baseline": baseline,
            "idle_per_minute": idle, "scale": scale}


def idle_rate(h, proxy, through):
    """SQS calls a minute that masq makes on an empty queue once it has settled."""
    queue = h.new_queue("lat-idle")
    table = h.new_table("latidle")
    proc = subprocess.Popen(
        [str(h.MASQ), "run", "--plugin", str(h.PLUGINS / "sha256-masker.wasm"), "--queue-url", queue,
         "--database-url", h.DATABASE, "--table", table, "--key-file", str(h.key())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**h.ENV, **through})
    try:
        # Settle: the starting receivers' first long polls (20 s) end empty and the pool shrinks.
        time.sleep(25)
        proxy.reset()
        time.sleep(IDLE_SECONDS)
        calls = proxy.stats()["total"]
    finally:
        proc.terminate()
        proc.wait()
    return calls * 60 / IDLE_SECONDS
