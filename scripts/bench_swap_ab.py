#!/usr/bin/env python3
"""`just bench-compare`, last step: the hot swap of BEFORE and AFTER measured by the same code
(this checkout's `bench.bench_swap`), interleaved, several times each, and the median of each.

Why: each revision's bench takes one swap sample with its own script, and the scripts differ
(before issue 11 the clock was taken before the query that saw the new version, so a swap
finishing during that query read as 0 ms). One sample of a ~100-300 ms figure on a shared
2-core machine cannot show a 5% difference; the same code, alternating, can come closer.

Usage: bench_swap_ab.py ROUNDS LABEL MASQ PLUGINS DATABASE [LABEL MASQ PLUGINS DATABASE ...]
Prints a table and writes the medians to target/compare/swap-ab.json, which
`bench_compare.py` uses for its hot-swap verdict.
"""

import statistics
import sys
from pathlib import Path

import bench


def main():
    rounds, rest = int(sys.argv[1]), sys.argv[2:]
    revisions = [rest[i:i + 4] for i in range(0, len(rest), 4)]
    samples = {label: [] for label, *_ in revisions}
    try:
        for _ in range(rounds):
            for label, masq, plugins, database in revisions:
                # Module globals: bench_swap and its helpers read them at call time.
                bench.MASQ, bench.PLUGINS, bench.DATABASE = Path(masq), Path(plugins), database
                bench.KEY = bench.ROOT / f"target/compare/swap-{label}.key"
                bench.new_table("swapinit")  # `db init` of this revision's own ledger
                samples[label].append(bench.bench_swap()["latency_ms"])
    finally:
        for label, masq, _, database in revisions:
            bench.MASQ, bench.DATABASE = Path(masq), database
            for t in bench.TABLES:
                bench.subprocess.run(["psql", "-q", database, "-c", bench.masq_sql.forget(t)],
                                     capture_output=True, env=bench.ENV)
    print(f"\nHot swap, the same measurement for both ({rounds} interleaved samples each, median):\n")
    print("| revision | file replaced -> new version serving, median | samples |")
    print("| --- | ---: | --- |")
    for label, values in samples.items():
        print(f"| {label} | {statistics.median(values):,.0f} ms | {', '.join(f'{v:,.0f}' for v in values)} ms |")
    out = bench.ROOT / "target/compare/swap-ab.json"
    out.write_text(bench.json.dumps({label: statistics.median(v) for label, v in samples.items()}))
    first, *others = samples.values()
    for (label, values) in list(samples.items())[1:]:
        print(f"\n{label} / {list(samples)[0]}: {statistics.median(values) / statistics.median(first):.2f}")


if __name__ == "__main__":
    main()
