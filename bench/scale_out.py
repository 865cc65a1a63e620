"""Scale-out on one machine: several `rwa serve` processes and two `rwa index run` on one Postgres and Redis.

    .venv/bin/python -m bench.scale_out                 # the documented run (wrk 10 s per measurement)
    .venv/bin/python -m bench.scale_out --quick         # the reduced form CI runs (tests/platform/test_scale_out.py)

What it does and reports (JSON on the last line of stdout; exit 1 if a check fails):

- API throughput: `{ __typename }` POSTs with wrk against one `rwa serve` process, then against three at once
  (one wrk per process, in parallel): requests/s of three vs one, on the same machine in the same run.
- Rolling restart under load: 16 concurrent clients send requests through a client-side balancer over the three
  processes (what a Service's endpoints do); each process in turn is taken out of rotation, given 0.5 s (the
  pod's preStop sleep), sent SIGTERM while requests are still in flight on it (uvicorn finishes them), restarted
  on the same port and put back once /readyz answers. Lost requests (transport errors, non-200) must be 0. A
  graphql-transport-ws socket open on each process must be closed with 1012 (service restart: reconnect).
- Indexer takeover: two `rwa index run` on one anvil chain with a token under traffic; the writer (found on the
  ops ports' /readyz) is killed with SIGKILL; the standby must report itself writer within a bound, the index must
  reach the head again, and every holder must match balanceOf (`rwa index verify`'s check), with no duplicate
  events.

- Worker killed mid-job: two `rwa worker` on RabbitMQ (a vhost of its own); a webhook delivery is queued to a
  receiver that holds the first POST open; the worker process sending it is found (by its TCP connection) and
  killed with SIGKILL mid-job; RabbitMQ redelivers the unacked message to the other worker. The job must complete
  exactly once: the delivery DELIVERED with one attempt recorded, one POST answered by the receiver.
- Trades across processes: a `trades(marketId)` subscriber on the first API process receives a trade placed (a
  crossing SELL and BUY over HTTP) on the second, through Redis pub/sub (market and traders seeded in the database
  with tests/trading/factories.py).

Loopback only: Postgres of BENCH_DATABASE_URL/TEST_DATABASE_URL (a scratch database, dropped), Redis of
BENCH_REDIS_URL (its own key prefix), its own anvil.

This module runs the scenarios and judges the report; the processes are in bench/scale_out_cluster.py, the scenarios
in bench/scale_out_api.py (throughput, trades, rolling restart), scale_out_indexer.py and scale_out_worker.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import scratch_database  # noqa: E402
from bench.scale_out_api import rolling_restart, throughput, trades_across_processes  # noqa: E402
from bench.scale_out_cluster import Api, base_env  # noqa: E402
from bench.scale_out_indexer import indexer_takeover  # noqa: E402
from bench.scale_out_worker import worker_killed_mid_job  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the reduced form CI runs (short wrk and traffic)")
    parser.add_argument("--apis", type=int, default=3)
    parser.add_argument("--skip-indexer", action="store_true")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    seconds = 3 if args.quick else 10
    import tempfile

    report: dict[str, Any] = {"load": os.getloadavg()[0]}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rwa-scale-") as tmp, scratch_database("rwa_scale") as db_url:
        workdir = Path(tmp)
        env = base_env(db_url, workdir)
        apis = [] if args.skip_api else [Api(env, workdir, i) for i in range(args.apis)]
        try:
            for api in apis:
                api.start()
            for api in apis:
                api.wait_ready()
            if apis:
                report["throughput"] = throughput(apis, seconds)
                print(f"throughput: {report['throughput']}", flush=True)
                report["trades"] = asyncio.run(trades_across_processes(db_url, env, apis))
                print(f"trades across processes: {report['trades']}", flush=True)
                report["rolling_restart"] = asyncio.run(rolling_restart(apis, clients=16, drain_s=0.5))
                print(f"rolling restart: {report['rolling_restart']}", flush=True)
        finally:
            for api in apis:
                api.kill()
        if "trades" in report and not report["trades"]["received"]:
            failures.append("the subscriber did not receive the trade placed on another process")
        rr = report.get("rolling_restart", {"lost": 0, "websocket_close_codes": []})
        if rr["lost"]:
            failures.append(f"{rr['lost']} request(s) lost during the rolling restart")
        if any(code != 1012 for code in rr["websocket_close_codes"]):
            failures.append(f"websocket close codes {rr['websocket_close_codes']} (want 1012)")
        if not args.skip_indexer:
            report["indexer"] = asyncio.run(indexer_takeover(db_url, workdir, env, 4.0 if args.quick else 20.0))
            print(f"indexer: {report['indexer']}", flush=True)
            if not report["indexer"]["verify_ok"]:
                failures.append("verify after the takeover found mismatches")
        if not args.skip_worker:
            report["worker"] = asyncio.run(worker_killed_mid_job(db_url, workdir, env))
            print(f"worker: {report['worker']}", flush=True)
            if not report["worker"]["exactly_once"]:
                failures.append("the job killed mid-way did not complete exactly once")
    report["load_after"] = os.getloadavg()[0]
    report["failures"] = failures
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
