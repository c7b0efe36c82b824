#!/usr/bin/env bash
# Builds python-masker as it was on contract 0.1 (masq:policy@0.1.0), kept so `just bench` can
# compare 0.1 and 0.2 in the same run: plugins/python-masker-0.1/build.sh <output.wasm>
# Installs componentize-py (pinned) when missing; skips the build when the output is newer
# than every source, the WIT contract and this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh <output.wasm>}"
version=0.25.1

# settings, version encoding and number formatting are python-masker's own (its `masker`
# package); this build holds only the 0.1 transform and entry point.
shared="$repo/plugins/python-masker"
if [ -f "$out" ] && [ -z "$(find "$here" "$shared/masker" "$repo/wit/policy.wit" -newer "$out" \( -name '*.py' -o -name '*.wit' -o -name build.sh \) -not -path '*/__pycache__/*' | head -1)" ]; then
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
componentize-py --quiet -d "$repo/wit" -w pseudonym-policy-plugin componentize --stub-wasi app \
  -p "$here" -p "$shared" -o "$out.tmp"
mv "$out.tmp" "$out" # a build cut short leaves no output that looks up to date
echo "built $out ($(stat -c %s "$out") bytes, $((SECONDS - started)) s)"
