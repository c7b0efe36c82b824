#!/usr/bin/env bash
# Builds js-masker as it was on contract 0.1 (masq:policy@0.1.0), kept so `just bench` can
# compare 0.1 and 0.2 in the same run, and as a 0.1 policy for the tests that mix contracts:
# plugins/js-masker-0.1/build.sh <output.wasm>. Uses js-masker's pinned componentize-js.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
js="$repo/plugins/js-masker"
out="${1:?usage: build.sh <output.wasm>}"

# settings, version encoding and number formatting are js-masker's own modules (imported from
# ../../js-masker/src); this build holds only the 0.1 transform and entry point.
if [ -f "$out" ] && [ -z "$(find "$here" "$js/src" "$js/build.mjs" "$js/package-lock.json" "$repo/wit/policy.wit" -newer "$out" | head -1)" ]; then
  echo "up to date: $out"
  exit 0
fi
if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  echo "installing componentize-js (npm ci in plugins/js-masker)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "npm ci failed in $js: check that the npm registry is reachable and run again" >&2; exit 1; }
fi
started=$SECONDS
node "$js/build.mjs" "$out.tmp" "$here/src/policy.js" "$repo/wit"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes, $((SECONDS - started)) s)"
