#!/usr/bin/env bash
# Runs the whole service locally on its offline defaults: no API keys, no
# Cloudflare account. Local D1 (migrated), R2, Queues, Durable Objects and cron
# persist under .wrangler/state. On the first start (or with --samples) it
# loads the sample documents in samples/ through the admin API.
# Usage: scripts/dev.sh [--port N] [--samples | --no-samples] [--embedder minilm] [--s3] [wrangler dev flags]
# --embedder minilm embeds with the local semantic model (scripts/dev/embed-server.sh,
# all-MiniLM-L6-v2, installed on first use) instead of the offline hashing
# embedder, and the same server's /v1/rerank stand-in serves `mode: "fused_reranked"`;
# its state (384-dimensional vectors) lives apart, in .wrangler/state-minilm.
# --s3 adds an S3 endpoint for the local R2 bucket on port N+1 (tests/standins/r2-s3.js): what
# r2-sync --target s3 writes there emits R2 event notifications onto the ingest queue, as R2
# does. Its access key pair is generated once into <state>/s3/credentials.json and printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false
export CI="${CI:-true}"  # never prompt

t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
say() { echo "[dev] $* (+$(elapsed) s)"; }

samples=auto
s3=no
port=8787
embedder=hashing
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --samples) samples=yes ;;
    --no-samples) samples=no ;;
    --s3) s3=yes ;;
    --port) port=${2:?--port needs a number}; shift ;;
    --embedder)
      embedder=${2:?--embedder needs hashing or minilm}; shift
      case "$embedder" in hashing | minilm) ;; *) echo "[dev] --embedder must be hashing or minilm" >&2; exit 2 ;; esac ;;
    *) args+=("$1") ;;
  esac
  shift
done

say "checking the toolchain"
bash scripts/setup.sh

# A local admin token for the admin API, generated once and never committed.
if [ ! -f .dev.vars ]; then
  printf 'ADMIN_TOKEN=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .dev.vars
  say "wrote a local ADMIN_TOKEN to .dev.vars"
fi
token=$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars | head -n 1)

state=.wrangler/state
cleanup=()
if [ "$embedder" = minilm ]; then
  state=.wrangler/state-minilm
  embed_port=$((port + 3))
  say "starting the local embedder on 127.0.0.1:$embed_port (installs it on first use)"
  setsid bash scripts/dev/embed-server.sh --port "$embed_port" > >(sed -u 's/^/[embed] /') 2>&1 &
  cleanup+=("$!")
  until curl -fsS "http://127.0.0.1:$embed_port/health" >/dev/null 2>&1; do
    if ! kill -0 "${cleanup[0]}" 2>/dev/null; then echo "[dev] the embedder exited" >&2; exit 1; fi
    sleep 0.5
  done
  args+=(--var EMBEDDING_PROVIDER:openai --var "OPENAI_BASE_URL:http://127.0.0.1:$embed_port"
    --var OPENAI_EMBEDDING_MODEL:all-MiniLM-L6-v2 --var EMBEDDING_DIMENSIONS:384
    --var OPENAI_API_KEY:local-embedder-needs-no-key
    --var RERANKER:http --var "RERANK_URL:http://127.0.0.1:$embed_port")
fi

say "applying D1 migrations"
npx wrangler d1 migrations apply DB --local --persist-to "$state" >/dev/null

# The S3 stand-in is a second Worker in the service's process (same local R2 bucket and
# queue); a second wrangler dev gives it its port, finding it through this dev registry.
configs=()
if [ "$s3" = yes ]; then
  s3_port=$((port + 1))
  export WRANGLER_REGISTRY_PATH="$PWD/$state/registry"
  eval "$(node_modules/.bin/node tests/standins/r2-s3-setup.mjs configs --dir "$state/s3" --service-config wrangler.jsonc)"
  configs=(-c wrangler.jsonc -c "$s3_standin_config")
fi

# wrangler dev builds the Worker through the config's build command, which
# skips the build when nothing changed. --test-scheduled exposes
# /__scheduled to trigger the cron.
say "starting wrangler dev (builds the Worker first if its sources changed)"
setsid npx wrangler dev "${configs[@]}" --persist-to "$state" --test-scheduled --port "$port" "${args[@]}" &
dev=$!
cleanup+=("$dev")
trap 'for pid in "${cleanup[@]}"; do kill -TERM -- -"$pid" 2>/dev/null || true; done' EXIT INT TERM

base="http://localhost:${port}"
until curl -fsS "$base/api/health" >/dev/null 2>&1; do
  if ! kill -0 "$dev" 2>/dev/null; then echo "[dev] wrangler dev exited" >&2; exit 1; fi
  sleep 0.5
done
say "service answering on $base"

if [ "$s3" = yes ]; then
  say "starting the S3 endpoint for R2 on 127.0.0.1:$s3_port"
  setsid npx wrangler dev -c "$s3_port_config" --persist-to "$state/s3/port" --port "$s3_port" --ip 127.0.0.1 \
    > >(sed -u 's/^/[s3] /') 2>&1 &
  cleanup+=("$!")
  # An unsigned request gets the stand-in's own 403 once the two processes are connected.
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/")" = 403 ]; do
    if ! kill -0 "${cleanup[-1]}" 2>/dev/null; then echo "[dev] the S3 endpoint exited" >&2; exit 1; fi
    sleep 0.5
  done
fi

marker=$state/.samples-loaded
if [ "$samples" = yes ] || { [ "$samples" = auto ] && [ ! -f "$marker" ]; }; then
  say "loading the sample documents (samples/) through the admin API"
  node_modules/.bin/node scripts/dev/load-samples.mjs --url "$base" --token "$token"
  touch "$marker"
fi
say "ready: open $base/ in a browser, or try:"
echo "  curl -s $base/api/chat -H 'content-type: application/json' -d '{\"question\":\"Which database stores Northwind orders?\"}'"
if [ "$s3" = yes ]; then
  say "S3 endpoint for R2 on http://127.0.0.1:$s3_port (bucket $s3_bucket); push with r2-sync:"
  echo "  export R2_ENDPOINT=http://127.0.0.1:$s3_port R2_BUCKET=$s3_bucket R2_ACCESS_KEY_ID=$s3_access_key_id R2_SECRET_ACCESS_KEY=$s3_secret_access_key"
  echo "  cargo run -p r2-sync -- push samples --yes"
fi
wait "$dev"
