#!/usr/bin/env bash
# Builds the Worker (wasm32, release) into build/ and prints its size.
# Also wrangler's build command, so it must work from the repository root.
#
# Skips the build when its inputs have not changed since the last one (the
# Rust sources and manifests of the Worker and the core, the lock file, the
# toolchain and this script): wasm-bindgen and wasm-opt otherwise re-run for
# a minute on every `wrangler dev` start. FORCE_BUILD=1 builds regardless.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

wasm=build/index_bg.wasm
stamp=build/.inputs-sha256
inputs() {
  {
    find crates/core crates/worker -type f -not -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum
    sha256sum Cargo.toml Cargo.lock .cargo/config.toml "$0"
    rustc --version
    worker-build --version 2>/dev/null || true
    wasm-bindgen --version 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1
}
want=$(inputs)
if [ "${FORCE_BUILD:-0}" != 1 ] && [ -f "$stamp" ] && [ -f build/index.js ] && [ -f "$wasm" ] \
   && [ "$(cat "$stamp")" = "$want" ]; then
  printf '[build] worker up to date (inputs unchanged), %d KiB raw\n' $(($(stat -c %s "$wasm") / 1024)) >&2
  exit 0
fi

# worker-build would download these; point it at the installed ones instead.
WASM_BINDGEN_BIN=$(command -v wasm-bindgen)
export WASM_BINDGEN_BIN
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/.bin/esbuild"

started=$(date +%s)
rm -f "$stamp"
(cd crates/worker && worker-build --release --out-dir "$root/build" >&2)
echo "$want" > "$stamp"

raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf '[build] worker wasm: %d KiB raw, %d KiB gzip (%s), built in %d s\n' $((raw / 1024)) $((gz / 1024)) "$wasm" $(($(date +%s) - started)) >&2
