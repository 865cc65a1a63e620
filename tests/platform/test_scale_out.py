"""The reduced scale-out run CI does (bench/scale_out.py --quick, bounded in time): three `rwa serve` processes
and two `rwa index run` on one Postgres and Redis. Each of the three processes answers under load (how much more
three serve than one is the bench's number, not a test's: on 2 cores shared with wrk and other test workers the
ratio measures the neighbours); a trades subscriber on one process receives a trade placed on another; a rolling restart of the
three under load loses no request and closes websockets with 1012 (reconnect); killing the indexer writer with
SIGKILL hands the chain to the standby within seconds, with every holder matching balanceOf afterwards; a worker
killed with SIGKILL mid-job (a webhook POST in flight) leaves the job to the other worker, which completes it once.
Needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl (a vhost per run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scale_out_quick(database_url: str, redis_url: str) -> None:
    from sqlalchemy.engine import make_url

    admin = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
    env = {**os.environ, "BENCH_DATABASE_URL": admin, "BENCH_REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale_out", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    served = report["throughput"]["per_process_rps"]
    assert len(served) == 3 and all(rps > 0 for rps in served), report["throughput"]
    assert report["throughput"]["non_2xx"] == 0
    trades = report["trades"]  # subscribed on process 0, placed on process 1
    assert trades["received"] and trades["order_statuses"] == ["NEW", "FILLED"], trades
    restart = report["rolling_restart"]
    assert restart["requests"] > 100 and restart["lost"] == 0, restart
    assert restart["websocket_close_codes"] == [1012, 1012, 1012]
    indexer = report["indexer"]
    assert indexer["verify_ok"] and indexer["takeover_s"] < 15, indexer
    worker = report["worker"]  # SIGKILL mid-job: redelivered by RabbitMQ, completed once by the other worker
    assert worker["exactly_once"] and worker["posts_answered"] == 1 and worker["same_webhook_id"], worker
