#!/usr/bin/env bash
# `just bench-compare BEFORE AFTER`: the `just bench` of two revisions, run back to back on this
# machine against the same services, and every figure of AFTER next to BEFORE's.
#
# Why: a restructuring must not cost speed (issue 10: "no figure more than 5% worse, same run
# conditions"), and figures from different days on a shared 2-core machine cannot show that.
# Each revision is checked out in its own worktree under target/compare/; both share one cargo
# target directory (the dependencies are built once) and run their own scripts/bench.py against
# a database of their own, created empty, so neither sees the other's tables or ledger layout.
# Writes target/compare/<rev>.md (each revision's BENCHMARKS.md) and prints the comparison;
# scripts/bench_compare.py explains how figures are paired and which direction is better.
# AFTER may be `.`: this checkout as it is, with its own target directory; its bench then
# writes docs/BENCHMARKS.md as `just bench` does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: scripts/bench-compare.sh BEFORE AFTER (two git revisions)" >&2; exit 2; }

root=$PWD
out=target/compare
mkdir -p "$out/target"
revs=()
for rev in "$1" "$2"; do
  if [ "$rev" = . ]; then
    revs+=(.)
    continue
  fi
  sha=$(git rev-parse --short "$rev^{commit}")
  revs+=("$sha")
  tree="$out/$sha"
  if [ ! -d "$tree" ]; then
    git worktree add --detach "$tree" "$sha" >/dev/null
  fi
  # One target directory for both: same lock file, so the dependencies compile once.
  [ -L "$tree/target" ] || ln -s "$root/$out/target" "$tree/target"
done

# Build everything first, so that the two measurements run back to back on a machine that is
# doing nothing else.
for sha in "${revs[@]}"; do
  echo "== building $sha"
  if [ "$sha" = . ]; then
    scripts/build-plugins.sh && cargo build --release --locked -p masq -p latency-proxy --bins --examples
    continue
  fi
  (cd "$out/$sha" && scripts/build-plugins.sh && cargo build --release --locked -p masq --bins --examples)
  cp "$out/target/release/masq" "$out/masq-$sha"
  for ex in "$out"/target/release/examples/*; do
    [ -x "$ex" ] && [ -f "$ex" ] && mkdir -p "$out/examples-$sha" && cp "$ex" "$out/examples-$sha/"
  done
  cp -r "$out/target/plugins" "$out/plugins-$sha"
done

for sha in "${revs[@]}"; do
  echo "== bench $sha"
  if [ "$sha" = . ]; then
    python3 scripts/bench.py
    cp docs/BENCHMARKS.md "$out/this-checkout.md"
    continue
  fi
  db="masq_compare_$sha"
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  # Put this revision's own build back in place (the shared target holds the last one built).
  cp "$out/masq-$sha" "$out/target/release/masq"
  cp "$out/examples-$sha"/* "$out/target/release/examples/"
  rm -rf "$out/target/plugins" && cp -r "$out/plugins-$sha" "$out/target/plugins"
  (cd "$out/$sha" && MASQ_BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" python3 scripts/bench.py)
  cp "$out/$sha/docs/BENCHMARKS.md" "$out/$sha.md"
  (cd "$out/$sha" && git checkout -q -- docs/BENCHMARKS.md)
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS $db"
done

# Each bench above took one hot-swap sample with its own script; measure both revisions again
# with this checkout's code, interleaved (scripts/bench_swap_ab.py says why).
swap_args=()
for sha in "${revs[@]}"; do
  db="masq_compare_swap_${sha/./this}"
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  if [ "$sha" = . ]; then
    swap_args+=(this-checkout "$root/target/release/masq" "$root/target/plugins" "postgres://postgres@127.0.0.1:5432/$db")
  else
    swap_args+=("$sha" "$root/$out/masq-$sha" "$root/$out/plugins-$sha" "postgres://postgres@127.0.0.1:5432/$db")
  fi
done
rm -f "$out/swap-ab.json"
python3 scripts/bench_swap_ab.py "${MASQ_COMPARE_SWAP_ROUNDS:-5}" "${swap_args[@]}"
for sha in "${revs[@]}"; do
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS masq_compare_swap_${sha/./this}"
done

name() { if [ "$1" = . ]; then echo "$out/this-checkout.md"; else echo "$out/$1.md"; fi; }
python3 scripts/bench_compare.py "$(name "${revs[0]}")" "$(name "${revs[1]}")" "$out/swap-ab.json"
