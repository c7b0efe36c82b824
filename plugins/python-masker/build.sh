#!/usr/bin/env bash
# Builds the python-masker component: plugins/python-masker/build.sh <output.wasm>
# Installs componentize-py (pinned) when missing; skips the build when the output is newer
# than every source, the WIT contract and this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh <output.wasm>}"
version=0.25.1

if [ -f "$out" ] && [ -z "$(find "$here" "$repo/wit/v0.2" -newer "$out" \( -name '*.py' -o -name '*.wit' -o -name build.sh \) -not -path '*/__pycache__/*' | head -1)" ]; then
  echo "up to date: $out"
  exit 0
fi
if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $version" ]; then
  echo "installing componentize-py $version"
  pip install --quiet "componentize-py==$version" \
    || { echo "cannot install componentize-py $version from PyPI: install it with pip and run again" >&2; exit 1; }
fi
# --stub-wasi: the component imports only masq's interfaces; a WASI call would trap, and
# Python's random seed is fixed at build time, which a deterministic masker never notices.
# pseudonym-policy-plugin: componentize-py imports every interface of its world, used or not,
# and a policy importing `seal` is refused under `masq run --unkeyed`.
started=$SECONDS
componentize-py --quiet -d "$repo/wit/v0.2" -w pseudonym-policy-plugin componentize --stub-wasi app \
  -p "$here" -o "$out.tmp"
mv "$out.tmp" "$out" # a build cut short leaves no output that looks up to date
echo "built $out ($(stat -c %s "$out") bytes, $((SECONDS - started)) s)"
