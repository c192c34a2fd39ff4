#!/usr/bin/env bash
# Installs what building and testing the service needs, idempotently: fast
# when everything is already there. Called by scripts/dev.sh, scripts/test.sh
# and .ci/run. Versions are pinned here and must agree with Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
TARPAULIN_VERSION=0.37.5
# The CLI must be exactly the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

log() { printf '[setup] %s\n' "$*" >&2; }

export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    log "adding rust component $component"
    rustup component add "$component"
  fi
done

if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  log "installing worker-build $WORKER_BUILD_VERSION (takes several minutes once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes several minutes once)"
  # Not --locked: the registry lacks one locked transitive version.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# Line coverage of the native tests (scripts/test/coverage.sh): its LLVM engine reads
# the profiles itself, so no llvm-tools component is needed.
if ! cargo tarpaulin --version 2>/dev/null | grep -q " $TARPAULIN_VERSION"; then
  log "installing cargo-tarpaulin $TARPAULIN_VERSION (takes several minutes once)"
  cargo install cargo-tarpaulin --version "$TARPAULIN_VERSION" --locked
fi

# `npm ci` fails here (other platforms' optional packages are missing from the
# registry); `npm install` respects the committed lock file. Skip it when the
# lock file has not changed since the last install.
stamp=node_modules/.portfolio-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x node_modules/.bin/wrangler ]; then
  log "installing npm packages"
  npm install --no-audit --no-fund
  echo "$want" > "$stamp"
fi

# wrangler needs Node >= 22.12; the npm `node` package provides it locally.
if ! node_modules/.bin/node --version | grep -q '^v22\.'; then
  echo "node_modules/.bin/node is not Node 22; remove node_modules and re-run" >&2
  exit 1
fi
# r2-sync's integration tests and benchmark run against a real S3-protocol
# server: moto's, in a virtualenv of its own (git-ignored). Pinned; installed
# only when missing or at another version.
MOTO_VERSION=5.2.5
if ! .venv-test/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null \
   || [ ! -x .venv-test/bin/moto_server ]; then
  log "installing moto[server] $MOTO_VERSION into .venv-test (S3 test server for r2-sync)"
  python3 -m venv .venv-test
  .venv-test/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# The property-based API test (scripts/test/schemathesis.sh) runs schemathesis
# from a virtualenv of its own (git-ignored); pinned, installed only when
# missing or at another version.
SCHEMATHESIS_VERSION=4.32.5
if ! .venv-schemathesis/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into .venv-schemathesis (OpenAPI property tests)"
  python3 -m venv .venv-schemathesis
  .venv-schemathesis/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Debian packages the tests need: Chromium for the chat page's browser test
# (a browser download from elsewhere is not possible here), PostgreSQL 15
# for migrate's tests (initdb + pg_ctl in a temporary directory; as root the
# cluster runs as the `postgres` user the package creates).
apt_packages=()
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
{ [ -x /usr/lib/postgresql/15/bin/initdb ] && id postgres >/dev/null 2>&1; } || apt_packages+=(postgresql-15)
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ${apt_packages[*]} (Debian packages, for the tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
  else
    echo "the tests need: apt-get install ${apt_packages[*]}" >&2
  fi
fi

log "toolchain ready"
