#!/usr/bin/env bash
# The native test suite (every crate but the wasm Worker, whose code runs in
# workerd and is covered by the end-to-end suite instead) under cargo-tarpaulin's
# LLVM engine: the tests run once, and their line coverage is measured while they
# do. Prints the figure per crate, writes test-output/coverage/ (HTML and JSON),
# and fails when a crate falls under COVERAGE_MIN percent (default 80).
# Extra arguments go to the test binaries (scripts/test.sh passes --skip fuzz_).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
out=test-output/coverage
mkdir -p "$out"
# Profiles are written where each test process starts; keep them out of the tree.
export LLVM_PROFILE_FILE="$PWD/target/tarpaulin/profraw/%p-%m.profraw"

cargo tarpaulin --engine llvm --workspace --exclude portfolio-worker \
  --exclude-files 'crates/worker/*' --exclude-files 'target/*' \
  --skip-clean --target-dir target/tarpaulin --timeout 900 \
  --out Json --out Html --output-dir "$out" -- "$@"

node_modules/.bin/node - "$out/tarpaulin-report.json" "${COVERAGE_MIN:-80}" <<'JS'
const [file, min] = process.argv.slice(2);
const report = JSON.parse(require("node:fs").readFileSync(file, "utf8"));
const crates = {};
for (const f of report.files) {
  const path = f.path.join("/");
  const m = /crates\/([^/]+)\//.exec(path);
  if (!m || f.coverable === 0) continue;
  const c = (crates[m[1]] ??= { covered: 0, coverable: 0 });
  c.covered += f.covered;
  c.coverable += f.coverable;
}
let low = [];
for (const [name, c] of Object.entries(crates).sort()) {
  const pct = (100 * c.covered) / c.coverable;
  console.log(`[coverage] ${name}: ${pct.toFixed(1)} % of ${c.coverable} lines`);
  if (pct < Number(min)) low.push(name);
}
const all = Object.values(crates).reduce((a, c) => [a[0] + c.covered, a[1] + c.coverable], [0, 0]);
console.log(`[coverage] native crates: ${((100 * all[0]) / all[1]).toFixed(1)} % of ${all[1]} lines (report: test-output/coverage/)`);
if (low.length) {
  console.error(`[coverage] under ${min} %: ${low.join(", ")}`);
  process.exit(1);
}
JS
