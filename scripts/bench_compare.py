#!/usr/bin/env python3
"""Pairs the figures of two docs/BENCHMARKS.md files (BEFORE, AFTER) row by row and prints
AFTER against BEFORE as a table: `scripts/bench-compare.sh` runs both benches and calls this.

A row is matched by its section and its "what" column. The first number of "measured" is the
figure (for "p50 / p99" rows, each number); its unit says which way is better: rates (".../s")
higher, times, sizes and CPU lower. A row counts as worse when it is worse by more than 5%, the
bound issue 10 sets; rows whose unit has no direction are shown without a verdict, and so are
the baselines (SQS ceilings, boto3, psql's COPY, the native policy): they measure what masq is
compared with, not masq. A figure printed in whole units (milliseconds of batch latency) is
not judged worse for one unit, its resolution. An optional third argument, the JSON that
`bench_swap_ab.py` writes, replaces the hot-swap row by that same-code measurement.
"""

import json
import os
import re
import sys

NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)")
# Rows relabelled since, AFTER's label -> BEFORE's: the same figure, measured the same way.
RENAMED = {
    ("End to end", "masq run --drain, default settings (decode, wasm policy, COPY + ledger, delete)"):
        ("End to end", "masq run --drain (decode, wasm policy, COPY + ledger, delete)"),
    # Before issue 11 the row "receive to commit" was measured from when a worker took the batch
    # (`ms` in masq's log then); that is `work_ms` now, and "receive to commit" starts at the
    # receipt of the batch's first message. Pair like with like; the new row has no "before".
    ("End to end", "masq batch latency p50 / p99 (batch start to commit)"):
        ("End to end", "masq batch latency p50 / p99 (receive to commit)"),
    ("End to end", "masq batch latency p50 / p99 (receive to commit)"): None,
}


def rows(path):
    found, section = {}, ""
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("section", "---"):
            continue
        section = cells[0] or section
        found[(section, cells[1])] = cells[2]
    return found


def numbers(text):
    return [float(n.replace(",", "")) for n in NUMBER.findall(text)]


def higher_is_better(measured):
    if "/s" in measured:
        return True
    if re.search(r"\b(ns|us|µs|ms|s|MiB|KiB|B|bytes)\b", measured):
        return False
    return None


def is_baseline(what):
    return what.startswith("baseline") or "(native)" in what or what.startswith("plain COPY") \
        or what.startswith("SQS receive+delete ceiling") or what.startswith("ceiling")


SWAP = ("Hot swap", "file replaced -> new version serving")


def main():
    before, after = rows(sys.argv[1]), rows(sys.argv[2])
    # The hot swap as `bench_swap_ab.py` measured it, when it did: both revisions by the same
    # code, alternating, median of several. Each bench's own row is one sample taken by that
    # revision's script (and the scripts' clocks differ), which says nothing at 5%.
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]) and SWAP in after:
        medians = list(json.load(open(sys.argv[3])).values())
        if len(medians) == 2:
            del after[SWAP]
            after[(SWAP[0], SWAP[1] + ", same code for both, median")] = f"{medians[1]:,.0f} ms"
            before[(SWAP[0], SWAP[1] + ", same code for both, median")] = f"{medians[0]:,.0f} ms"
    print("| section | what | before | after | after / before | verdict |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    worse = 0
    for key, now in after.items():
        old = RENAMED.get(key, key)
        if old is None or old not in before:
            continue
        then, direction = before[old], higher_is_better(after[key])
        a, b = numbers(then), numbers(now)
        if not a or not b or len(a) != len(b) or 0 in a:
            continue
        ratios = [y / x for x, y in zip(a, b)]
        shown = " / ".join(f"{r:.2f}" for r in ratios)
        if is_baseline(key[1]):
            # What masq is measured against, not masq: its change is noise or a change of the
            # baseline itself (the native policy since contract 0.2 first builds 0.2's types).
            verdict = "baseline, not masq: no verdict"
        elif direction is None:
            verdict = ""
        else:
            # A figure printed in whole units (batch latency in ms: 7 or 8) cannot show 5%:
            # one unit either way is its resolution, not a change.
            coarse = [abs(y - x) <= 1 and x == int(x) and y == int(y) for x, y in zip(a, b)]
            bad = [r for r, c in zip(ratios, coarse) if not c and (r < 0.95 if direction else r > 1.05)]
            verdict = "worse by more than 5%" if bad else ("ok (within 1, the figure's resolution)" if any(
                c and (r < 0.95 if direction else r > 1.05) for r, c in zip(ratios, coarse)) else "ok")
            worse += bool(bad)
        print(f"| {key[0]} | {key[1]} | {then} | {now} | {shown} | {verdict} |")
    print(f"\n{worse} figure(s) more than 5% worse after than before.")


if __name__ == "__main__":
    main()
