"""Periodic jobs: a small loop thread in every worker process that sends each periodic actor its message.

At most one message per (actor, args) is outstanding at a time across all worker processes: the scheduler
takes a Redis key (SET NX with a safety TTL) before sending, and the actor deletes it when it finishes
(`release`), so a slow pass is never queued up behind copies of itself and a crashed one is retried after the
TTL. Without Redis (StubBroker in tests) the keys are kept in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from jobs import context

log = logging.getLogger("rwa.jobs.scheduler")
TICK_S = 0.1
SAFETY_TTL_MS = 120_000


@dataclass
class Periodic:
    actor_name: str
    interval_s: float
    args: tuple[Any, ...] = ()
    last: float = field(default=0.0, compare=False)

    @property
    def key(self) -> str:
        return schedule_key(self.actor_name, *self.args)


def schedule_key(actor_name: str, *args: Any) -> str:
    return f"sched:{actor_name}:" + ":".join(str(a) for a in args)


_memory: set[str] = set()
_memory_lock = threading.Lock()
_redis: Any = None


def _sync_redis() -> Any:
    global _redis
    url = context.settings().redis_url
    if url and _redis is None:
        import redis

        _redis = redis.Redis.from_url(url)
    return _redis if url else None


def acquire(key: str) -> bool:
    r = _sync_redis()
    if r is None:
        with _memory_lock:
            if key in _memory:
                return False
            _memory.add(key)
            return True
    return bool(r.set(context.settings().redis_prefix + key, b"1", nx=True, px=SAFETY_TTL_MS))


def release(actor_name: str, *args: Any) -> None:
    """Called by a periodic actor when its pass is over (success or failure)."""
    key = schedule_key(actor_name, *args)
    r = _sync_redis()
    if r is None:
        with _memory_lock:
            _memory.discard(key)
        return
    try:
        r.delete(context.settings().redis_prefix + key)
    except Exception:  # the TTL frees it anyway
        log.warning("could not release %s", key, exc_info=True)


class Scheduler(Middleware):
    def __init__(self, jobs: list[Periodic] | None = None) -> None:
        self.jobs: list[Periodic] = jobs or []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, actor_name: str, interval_s: float, *args: Any) -> None:
        self.jobs.append(Periodic(actor_name, interval_s, args))

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="rwa-scheduler", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def tick(self, broker: dramatiq.Broker, now: float | None = None) -> list[str]:
        """Send what is due; returns the keys sent (exposed for tests)."""
        now = time.monotonic() if now is None else now
        sent = []
        for job in self.jobs:
            if now - job.last < job.interval_s:
                continue
            job.last = now
            try:
                actor = broker.get_actor(job.actor_name)
            except dramatiq.errors.ActorNotFound:
                continue
            if acquire(job.key):
                actor.send(*job.args)
                sent.append(job.key)
        return sent

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick(broker)
            except Exception:  # a Redis/broker hiccup must not kill the schedule
                log.warning("scheduler tick failed", exc_info=True)
                self._stop.wait(1.0)
