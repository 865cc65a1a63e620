#!/usr/bin/env bash
# Set up (idempotent) and run the whole product on the embedded default: `rwa dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Embedded Postgres refuses a data dir inside root's home (it would open permissions on it): as root with the
# checkout there, keep the data under /var/lib instead.
if [ -z "${RWA_DATA_DIR:-}" ] && [ "$(id -u)" = "0" ] && [[ "$PWD/" == "$HOME/"* || "$PWD/" == /root/* ]]; then
  export RWA_DATA_DIR="/var/lib/stablerwa/$(basename "$PWD")"
  echo "data dir: $RWA_DATA_DIR (the checkout is inside root's home)" >&2
fi
exec .venv/bin/rwa dev "$@"
