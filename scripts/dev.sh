#!/usr/bin/env bash
# Runs the whole service locally on its offline defaults: no API keys, no
# Cloudflare account. Local D1 (migrated), R2, Queues, Durable Objects and cron
# persist under .wrangler/state. Usage: scripts/dev.sh [--port N] [wrangler dev flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export CI="${CI:-true}"  # never prompt

bash scripts/setup.sh
# wrangler dev builds the Worker itself (the config's build command), once.

# A local admin token for the admin API, generated once and never committed.
if [ ! -f .dev.vars ]; then
  printf 'ADMIN_TOKEN=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .dev.vars
  echo "[dev] wrote a local ADMIN_TOKEN to .dev.vars"
fi

npx wrangler d1 migrations apply DB --local --persist-to .wrangler/state

port=8787
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "--port" ]; then port=${args[$((i + 1))]:-8787}; fi
done
case " $* " in *" --port "*) ;; *) args+=(--port "$port") ;; esac
echo "[dev] service listening on http://localhost:${port} (try: curl http://localhost:${port}/api/health)"
# The Worker is built above; --test-scheduled exposes /__scheduled to trigger the cron.
exec npx wrangler dev --persist-to .wrangler/state --test-scheduled "${args[@]}"
