#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from
# openapi.yaml and runs them against the built Worker under `wrangler dev`
# (scripts/test/api-test-stack.mjs: sample corpus ingested, rate limiters off).
# Fails on any 5xx, any response that does not match the schema, and every
# other check (all are on by default; schemathesis.toml turns one off for one
# operation, which `--checks all` would override). Prints the number of test
# cases tried.
#
# Env: SCHEMATHESIS_MAX_EXAMPLES (per operation and phase, default 10),
#      SCHEMATHESIS_SEED (default 1, so a CI failure can be replayed).
# Needs the built Worker (scripts/build-worker.sh) and the virtualenv that
# scripts/setup.sh installs (.venv-schemathesis).
set -euo pipefail
cd "$(dirname "$0")/../.."

st=.venv-schemathesis/bin/schemathesis
if [ ! -x "$st" ]; then
  echo "schemathesis missing: run scripts/setup.sh" >&2
  exit 1
fi
out=test-output/schemathesis
mkdir -p "$out"

# The stack lives as long as its stdin: a FIFO held open by this script.
fifo=$(mktemp -u)
mkfifo "$fifo"
node_modules/.bin/node scripts/test/api-test-stack.mjs <"$fifo" >"$out/stack.out" 2>"$out/stack.err" &
stack_pid=$!
exec 3>"$fifo"
rm -f "$fifo"
cleanup() {
  exec 3>&- || true
  kill "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 240); do
  grep -q '^BASE_URL=' "$out/stack.out" 2>/dev/null && break
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    cat "$out/stack.err" >&2
    echo "the local stack did not start" >&2
    exit 1
  fi
  sleep 0.5
done
base=$(sed -n 's/^BASE_URL=//p' "$out/stack.out")
[ -n "$base" ] || { cat "$out/stack.err" >&2; echo "the local stack did not start in 120 s" >&2; exit 1; }
echo "[schemathesis] stack at $base"

status=0
"$st" --no-color run openapi.yaml \
  --url "$base" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-10}" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --request-timeout 30 \
  --max-time 180 \
  --workers 2 \
  --report junit,ndjson --report-dir "$out" \
  >"$out/run.txt" 2>&1 || status=$?
grep -vE '^\s*$' "$out/run.txt" | tail -60
# The count of test cases tried, from schemathesis's own summary.
cases=$(grep -oE '[0-9]+ generated' "$out/run.txt" | tail -1 | grep -oE '[0-9]+' || echo "?")
echo "[schemathesis] $cases test cases generated (report: $out/)"
exit "$status"
