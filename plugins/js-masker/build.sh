#!/usr/bin/env bash
# Builds the js-masker component: plugins/js-masker/build.sh <output.wasm>
# Installs the pinned componentize-js from package-lock.json (npm ci) when missing or
# changed; skips the build when the output is newer than every source, the WIT contract,
# the lock file and this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh <output.wasm>}"

if [ -f "$out" ] && [ -z "$(find "$here/src" "$here/build.mjs" "$here/build.sh" "$here/package-lock.json" "$repo/wit/v0.2" -newer "$out" | head -1)" ]; then
  echo "up to date: $out"
  exit 0
fi
# npm writes node_modules/.package-lock.json on every install: older than the lock file
# means the pinned versions changed since.
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "installing componentize-js (npm ci in plugins/js-masker)"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "npm ci failed in $here: check that the npm registry is reachable and run again" >&2; exit 1; }
fi
started=$SECONDS
node "$here/build.mjs" "$out.tmp"
mv "$out.tmp" "$out" # a build cut short leaves no output that looks up to date
echo "built $out ($(stat -c %s "$out") bytes, $((SECONDS - started)) s)"
