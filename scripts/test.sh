#!/usr/bin/env bash
# Set up and run the whole test suite against real Postgres, Redis and local anvil chains.
# Uses the machine's Postgres/Redis (TEST_DATABASE_URL / TEST_REDIS_URL, defaults 127.0.0.1:5432 / :6379),
# starting them when they are installed but down.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/root_home.sh
base="$(rwa_root_home_base)"
if [ -n "$base" ]; then  # the tests start embedded Postgres too: same venv as scripts/dev.sh
  export RWA_VENV="${RWA_VENV:-$base/venv}"
  echo "the checkout is inside root's home: venv $RWA_VENV" >&2
fi
RWA_SETUP_BROWSER=1 RWA_SETUP_DEPLOY_TOOLS=1 bash scripts/setup.sh

# With TEST_DATABASE_URL / TEST_REDIS_URL unset and no local servers, the fixtures start embedded ones.
# Starting them is best effort (needs root): when it fails the fixtures fall back to embedded services.
if [ -z "${TEST_DATABASE_URL:-}" ] && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null && break
    done || true
  fi
fi
if [ -z "${TEST_REDIS_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if command -v redis-server >/dev/null 2>&1; then
    { mkdir -p /var/lib/redis /var/log/redis &&
      redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log; } 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.2; done
  fi
fi

# RabbitMQ (the alternative job broker, tests/jobs) has no embedded fallback: start it when installed but down.
if [ -z "${TEST_BROKER_URL:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    rabbitmq-server -detached 2>/dev/null || true
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.3; done
  fi
fi

if [ -z "${TEST_DATABASE_URL:-}" ] && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  export TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
fi
if [ -z "${TEST_REDIS_URL:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  export TEST_REDIS_URL="redis://127.0.0.1:6379/0"
fi
echo "tests use: ${TEST_DATABASE_URL:-embedded Postgres} / ${TEST_REDIS_URL:-embedded Redis}"

# The suite runs in 3 worker processes (pytest-xdist, a whole test file per worker; each worker is a session of its
# own: databases, Redis prefixes, anvil chains, servers on free ports). `-n 0` (or RWA_TEST_WORKERS=0) runs it in one
# process, `-n N` in N; --pdb/--trace run in one process too.
workers=(-n "${RWA_TEST_WORKERS:-3}" --dist loadfile)
for arg in "$@"; do
  case "$arg" in
    -n* | --numprocesses | --numprocesses=* | --pdb | --trace) workers=() ;;
  esac
done
# pytest exits 5 when it collected nothing: that is a failure here too.
exec "${RWA_VENV:-.venv}/bin/pytest" ${workers[@]+"${workers[@]}"} "$@"
