#!/usr/bin/env bash
# Idempotent setup: Python venv with the project (+dev extras), npm packages (anvil, GraphiQL assets; clients/),
# GraphiQL assets copied into server/static, and Debian tools the tests use (chromium; kubectl + promtool) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The venv: ./.venv unless RWA_VENV says otherwise (scripts/dev.sh moves it out of root's home).
VENV="${RWA_VENV:-.venv}"

# A Python the wheels exist for (pgserver: CPython 3.10-3.12) with venv support; $PYTHON overrides.
usable_python() {
  command -v "$1" >/dev/null 2>&1 &&
    "$1" -c 'import sys, venv, ensurepip; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' >/dev/null 2>&1
}
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-}"
  if [ -z "$PYTHON" ]; then
    for candidate in python3 python3.12 python3.11 python3.10; do
      if usable_python "$candidate"; then PYTHON="$candidate"; break; fi
    done
  fi
  if [ -z "$PYTHON" ] || ! usable_python "$PYTHON"; then
    echo "error: need Python 3.10-3.12 with venv (Debian/Ubuntu: apt-get install python3-venv; or set PYTHON=...)" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null  # editable installs from pyproject need a recent pip
fi
# The dependencies exactly as locked (runtime + dev extra, sha256-checked: requirements-dev.lock, written by
# scripts/lock.sh from pyproject.toml), then the project itself without resolving anything again.
# Stamp file: skip both when neither the lockfile nor pyproject.toml changed since the last install.
stamp="$VENV/.rwa-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --require-hashes -r requirements-dev.lock
  # the project; the locked pins already satisfy it, so this resolves only a dependency declared after the lock
  # was made (tests/platform/test_dependencies.py then fails until `bash scripts/lock.sh` is run and committed)
  "$VENV/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
fi

command -v npm >/dev/null 2>&1 || { echo "error: npm not found (Node 20: apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
"$VENV/bin/python" -m server.graphiql install >/dev/null
# The front-end check (tests/clients): graphql-codegen, TypeScript and graphql-ws for clients/, from its own lockfile.
if [ ! -d clients/node_modules ] || [ clients/package-lock.json -nt clients/node_modules/.package-lock.json ]; then
  (cd clients && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# The browser test runs Debian's /usr/bin/chromium (not a snap, not Playwright's download).
if [ "${RWA_SETUP_BROWSER:-0}" = "1" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed; the GraphiQL browser test needs it (apt-get install chromium)" >&2
  fi
fi

# wrk drives the HTTP benchmarks and tests/platform/test_scale_out.py (bench/scale_out.py --quick).
if [ "${RWA_SETUP_DEPLOY_TOOLS:-0}" = "1" ] && ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "note: wrk is not installed; the scale-out test and the HTTP benches need it (apt-get install wrk)" >&2
  fi
fi

# Deployment tooling for tests/platform/test_deploy_manifests.py: Debian's kubectl (kustomize) and prometheus
# (promtool); kubernetes-validate comes with the dev extra. The test fails, not skips, when they are missing.
if [ "${RWA_SETUP_DEPLOY_TOOLS:-0}" = "1" ] && { ! command -v kubectl >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; }; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl prometheus >/dev/null
  else
    echo "note: kubectl/promtool are not installed; the deploy manifest tests need them (apt-get install kubectl prometheus)" >&2
  fi
fi
