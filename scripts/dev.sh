#!/usr/bin/env bash
# Set up (idempotent) and run the whole product on the embedded default: `rwa dev` (arguments go to it).
set -euo pipefail
cd "$(dirname "$0")/.."
# As root, pgserver runs postgres as its own OS user and opens read permission on every parent directory of
# its data dir and of its install dir (the venv): with the checkout inside root's home, keep both under
# /var/lib/stablerwa/<checkout name> instead, so root's home stays closed.
if [ "$(id -u)" = "0" ] && [[ "$PWD/" == "$HOME/"* || "$PWD/" == /root/* ]]; then
  base="/var/lib/stablerwa/$(basename "$PWD")"
  export RWA_VENV="${RWA_VENV:-$base/venv}" RWA_DATA_DIR="${RWA_DATA_DIR:-$base/data}"
  echo "the checkout is inside root's home: venv $RWA_VENV, data dir $RWA_DATA_DIR" >&2
fi
bash scripts/setup.sh
exec "${RWA_VENV:-.venv}/bin/rwa" dev "$@"
