#!/usr/bin/env bash
# Idempotent setup: Python venv with the project (+dev extras), npm packages (anvil, GraphiQL assets),
# GraphiQL assets copied into server/static, and Debian tools the tests use (chromium) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# stamp file: skip the (slow) resolver run when pyproject.toml did not change
stamp=.venv/.rwa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
.venv/bin/python -m server.graphiql install >/dev/null

if [ "${RWA_SETUP_BROWSER:-0}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed; the GraphiQL browser test needs it (apt-get install chromium)" >&2
  fi
fi
