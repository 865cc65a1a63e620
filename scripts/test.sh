#!/usr/bin/env bash
# Set up and run the whole test suite against real Postgres, Redis and local anvil chains.
# Uses the machine's Postgres/Redis (TEST_DATABASE_URL / TEST_REDIS_URL, defaults 127.0.0.1:5432 / :6379),
# starting them when they are installed but down.
set -euo pipefail
cd "$(dirname "$0")/.."
RWA_SETUP_BROWSER=1 bash scripts/setup.sh

# With TEST_DATABASE_URL / TEST_REDIS_URL unset and no local servers, the fixtures start embedded ones.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
fi

if [ -z "${TEST_DATABASE_URL:-}" ] && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  export TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
fi
if [ -z "${TEST_REDIS_URL:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  export TEST_REDIS_URL="redis://127.0.0.1:6379/0"
fi
echo "tests use: ${TEST_DATABASE_URL:-embedded Postgres} / ${TEST_REDIS_URL:-embedded Redis}"

# pytest exits 5 when it collected nothing: that is a failure here too.
exec .venv/bin/pytest "$@"
