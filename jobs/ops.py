"""Health of a running `rwa worker`, for its ops port (core/ops_server.py):

- liveness: the dramatiq process `rwa worker` supervises is running;
- readiness: that, and the broker (RabbitMQ or Redis) accepts a connection now (checked at most every 2 s).
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

CACHE_S = 2.0


def broker_reachable(url: str, timeout: float = 2.0) -> tuple[bool, str | None]:
    try:
        if url.startswith(("amqp://", "amqps://")):
            import pika

            params = pika.URLParameters(url)
            params.socket_timeout = timeout
            params.blocked_connection_timeout = timeout
            params.connection_attempts = 1
            connection = pika.BlockingConnection(params)
            connection.close()
        else:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
    except Exception as exc:  # noqa: BLE001  (any failure is "unreachable", with its type)
        return False, type(exc).__name__
    return True, None


class WorkerHealth:
    def __init__(self, proc: subprocess.Popen, broker_url: str, kind: str) -> None:
        self.proc = proc
        self.broker_url = broker_url
        self.kind = kind
        self._lock = threading.Lock()
        self._checked = 0.0
        self._broker: tuple[bool, str | None] = (False, "not checked")

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        running = self.proc.poll() is None
        return running, {"dramatiq": "running" if running else f"exited {self.proc.returncode}"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        alive, details = self.liveness()
        with self._lock:
            if time.monotonic() - self._checked > CACHE_S:
                self._broker = broker_reachable(self.broker_url)
                self._checked = time.monotonic()
            reachable, why = self._broker
        details["broker"] = {"kind": self.kind, "reachable": reachable, **({"error": why} if why else {})}
        return alive and reachable, details
