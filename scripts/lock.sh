#!/usr/bin/env bash
# Regenerate the lockfiles from pyproject.toml (run after changing a dependency; commit both files):
#   requirements-dev.lock  runtime + dev extra (scripts/setup.sh, CI)
#   requirements.lock      runtime only, the same versions (Dockerfile)
# Every pin carries sha256 hashes (pip then refuses anything else); the resolution covers Python 3.10-3.12 on
# every platform (--universal). `--upgrade` moves every pin to the newest allowed version.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-.venv/bin/uv}"
[ -x "$UV" ] || UV="$(command -v uv || true)"
[ -n "$UV" ] || { echo "error: uv not found (pip install uv)" >&2; exit 1; }
common=(--universal --python-version 3.10 --generate-hashes --quiet --no-header --annotation-style line "$@")
"$UV" pip compile pyproject.toml --extra dev "${common[@]}" -o requirements-dev.lock
"$UV" pip compile pyproject.toml "${common[@]}" -c requirements-dev.lock -o requirements.lock
echo "wrote requirements-dev.lock ($(grep -c '==' requirements-dev.lock) pins) and requirements.lock ($(grep -c '==' requirements.lock) pins)"
