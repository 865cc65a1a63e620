#!/usr/bin/env bash
# Set up (idempotent) and run the whole product on the embedded default: `rwa dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rwa dev "$@"
