"""Prometheus metrics of background jobs (dramatiq middleware) and of the worker processes running them.

Under `rwa worker` every dramatiq process writes to the PROMETHEUS_MULTIPROC_DIR `rwa worker` prepares, and its ops
port aggregates them (core/ops_server.py); an API process counts what it enqueues on its own /metrics.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from prometheus_client import Counter, Gauge, Histogram

JOBS_ENQUEUED = Counter("rwa_jobs_enqueued_total", "Messages enqueued, by actor", ["actor"])
JOBS_PROCESSED = Counter("rwa_jobs_processed_total", "Messages whose actor returned, by actor", ["actor"])
JOBS_FAILED = Counter("rwa_jobs_failed_total", "Attempts whose actor raised (retried or not), by actor", ["actor"])
JOBS_SKIPPED = Counter(
    "rwa_jobs_skipped_total", "Messages skipped (expired, or a middleware said so), by actor", ["actor"]
)
JOB_SECONDS = Histogram(
    "rwa_job_seconds",
    "Time an actor ran, by actor",
    ["actor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOBS_IN_PROGRESS = Gauge(
    "rwa_jobs_in_progress", "Messages being processed now, by actor", ["actor"], multiprocess_mode="livesum"
)
WORKER_PROCESSES = Gauge("rwa_worker_processes", "dramatiq worker processes alive", multiprocess_mode="livesum")


class JobMetrics(dramatiq.Middleware):
    """Counts and times every message an actor processes (each attempt) and every message enqueued."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        WORKER_PROCESSES.inc()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        WORKER_PROCESSES.dec()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: Any) -> None:
        JOBS_ENQUEUED.labels(message.actor_name).inc()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        with self._lock:
            self._started[message.message_id] = time.perf_counter()
        JOBS_IN_PROGRESS.labels(message.actor_name).inc()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        actor = message.actor_name
        if started is not None:
            JOB_SECONDS.labels(actor).observe(time.perf_counter() - started)
            JOBS_IN_PROGRESS.labels(actor).dec()
        (JOBS_FAILED if exception is not None else JOBS_PROCESSED).labels(actor).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        with self._lock:
            started = self._started.pop(message.message_id, None)
        if started is not None:
            JOBS_IN_PROGRESS.labels(message.actor_name).dec()
        JOBS_SKIPPED.labels(message.actor_name).inc()
