#!/usr/bin/env bash
# The whole test suite: formatting, lints, native tests, the wasm build, the
# end-to-end suite against the built Worker in workerd, and a bundle check.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false

bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, all targets)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (wasm32 worker)"
cargo clippy -p portfolio-worker --target wasm32-unknown-unknown -- -D warnings

step "build the Worker (wasm, release)"
bash scripts/build-worker.sh

# After the build: r2-sync's end-to-end test runs the built Worker.
step "cargo test (native) with line coverage (cargo-tarpaulin)"
# The native crates' tests run once, measured; each crate must stay above 80 %.
# The fuzz harness runs in its own step below, with its counts printed.
bash scripts/test/coverage.sh --skip fuzz_

step "fuzzing: document/front matter, chunker, queue messages, FTS expressions"
# Stable-toolchain harness (crates/core/tests/fuzz.rs) over the seed corpus in
# fuzz/corpus/<target>/; FUZZ_EXECUTIONS generated inputs per target.
FUZZ_EXECUTIONS="${FUZZ_EXECUTIONS:-10000}" cargo test -p portfolio-core --test fuzz -- --nocapture 2>&1 \
  | grep -E '^\[fuzz\]|^test result|panicked|Case failed|minimal failing'

step "end-to-end tests (vitest + Miniflare)"
NO_COLOR=1 npx vitest run

step "local stack tests (wrangler dev): chat and operator pages in headless Chromium, configuration errors, the openai / ai / MCP SDK clients"
node_modules/.bin/node --test --test-concurrency=1 tests/local/*.test.mjs

step "local semantic embedder: all-MiniLM-L6-v2 in numpy against its published similarity scores"
bash scripts/dev/embed-server.sh --self-check

step "schemathesis: openapi.yaml against the Worker under wrangler dev (no 5xx, every answer matches the schema)"
bash scripts/test/schemathesis.sh

step "load test: 100 concurrent chats while 50 documents are ingested (wrangler dev)"
node_modules/.bin/node scripts/test/load-test.mjs

step "bundle check: wrangler deploy --dry-run --env production"
# Runs wrangler's build command (cached: cargo has nothing to do) and bundles
# exactly what a deploy would upload, offline and without credentials.
if ! out=$(npx wrangler deploy --dry-run --env production --outdir .wrangler/dry-run 2>&1); then
  echo "$out"
  exit 1
fi
echo "$out" | grep -E "Total Upload|exiting now"
