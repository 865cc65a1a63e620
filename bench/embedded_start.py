"""Start/stop times of the embedded services (core.embedded).

    .venv/bin/python -m bench.embedded_start [--reps 3]
cold: fresh data dir (initdb + postgres + redis); warm: data dir exists, nothing running;
join: a second process attaching to running servers; stop: last user leaving (servers stopped).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.embedded import EmbeddedServices

REPO = Path(__file__).resolve().parents[1]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def join_time(data_dir: Path) -> float:
    """start() time reported by a second process while this one holds the servers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.embedded_runner", str(data_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    events = [json.loads(proc.stdout.readline()) for _ in range(2)]
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return float(events[1]["start_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    results: dict[str, list[float]] = {"cold": [], "warm": [], "join (other process)": [], "stop": [], "redis only": []}
    for _ in range(reps):
        data_dir = Path(tempfile.mkdtemp(prefix="rwa-bench-", dir="/tmp"))
        try:
            services = EmbeddedServices(data_dir)
            results["cold"].append(timed(services.start))
            results["stop"].append(timed(services.stop))
            results["warm"].append(timed(services.start))
            results["join (other process)"].append(join_time(data_dir))
            services.stop()
            redis_only = EmbeddedServices(data_dir, postgres=False)
            results["redis only"].append(timed(redis_only.start))
            redis_only.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'phase':<22}{'median s':>10}{'min s':>10}{'max s':>10}  (n={reps})")
    for phase, values in results.items():
        print(f"{phase:<22}{statistics.median(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")


if __name__ == "__main__":
    main()
