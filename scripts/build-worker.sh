#!/usr/bin/env bash
# Builds the Worker (wasm32, release) into build/ and prints its size.
# Also wrangler's build command, so it must work from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

# worker-build would download these; point it at the installed ones instead.
WASM_BINDGEN_BIN=$(command -v wasm-bindgen)
export WASM_BINDGEN_BIN
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/.bin/esbuild"

(cd crates/worker && worker-build --release --out-dir "$root/build" >&2)

wasm=build/index_bg.wasm
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
printf '[build] worker wasm: %d KiB raw, %d KiB gzip (%s)\n' $((raw / 1024)) $((gz / 1024)) "$wasm" >&2
