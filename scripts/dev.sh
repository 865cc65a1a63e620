#!/usr/bin/env bash
# Set up (idempotent) and run the whole product on the embedded default: `rwa dev` (arguments go to it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/root_home.sh
base="$(rwa_root_home_base)"
if [ -n "$base" ]; then
  export RWA_VENV="${RWA_VENV:-$base/venv}" RWA_DATA_DIR="${RWA_DATA_DIR:-$base/data}"
  echo "the checkout is inside root's home: venv $RWA_VENV, data dir $RWA_DATA_DIR" >&2
fi
bash scripts/setup.sh
exec "${RWA_VENV:-.venv}/bin/rwa" dev "$@"
