"""The ops port of every long-running process (`rwa serve`'s supervisor, `rwa worker`, `rwa index run`,
`rwa agent run`): Prometheus `/metrics`, `/healthz` (liveness) and `/readyz` (readiness), from a daemon thread.

Each role gives two callables returning ``(ok, details)``; they run on the server's thread, so they read state the
role's main loop keeps (a heartbeat, gauges), never its event loop. 200 when ok, else 503, JSON details either way.
Under `PROMETHEUS_MULTIPROC_DIR` /metrics aggregates every process writing there (uvicorn or dramatiq workers).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("rwa.ops")

Check = Callable[[], tuple[bool, dict[str, Any]]]


def _always_ok() -> tuple[bool, dict[str, Any]]:
    return True, {}


class Heartbeat:
    """Liveness of an asyncio loop seen from another thread: `beat()` is called by a task on the loop; the loop is
    alive while the last beat is younger than `stale_after_s` (a loop blocked by a stuck call stops beating)."""

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    async def run(self, every_s: float = 1.0) -> None:
        import asyncio

        while True:
            self.beat()
            await asyncio.sleep(every_s)

    def check(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.last
        return age < self.stale_after_s, {"loopBeatAgeS": round(age, 1)}


def prepare_multiproc_dir(role: str) -> Path:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the processes a supervisor (`rwa serve`, `rwa worker`) starts: a directory
    of its own under the configured one (or the temp dir), so two supervisors on a host never mix or wipe each other's
    files; directories left by supervisors that died are removed. Exported to the environment the children inherit
    (set before they start: prometheus_client picks its value class at import)."""
    import re
    import shutil
    import tempfile

    base = Path(
        os.environ.get("RWA_PROMETHEUS_BASE_DIR") or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.gettempdir()
    )
    base.mkdir(parents=True, exist_ok=True)
    os.environ["RWA_PROMETHEUS_BASE_DIR"] = str(base)  # a nested supervisor (rwa dev) starts from the same base
    for stale in base.glob("rwa-*-metrics-*"):
        match = re.search(r"-(\d+)$", stale.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(stale, ignore_errors=True)
    path = base / f"rwa-{role}-metrics-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)  # cleaned on start: counters of an earlier run must not add up
    path.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def remove_multiproc_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_dead_processes(directory: str) -> None:
    """Live gauges (livesum/liveall...) of a process that died (a worker replaced after SIGKILL) stop counting."""
    import re

    from prometheus_client import multiprocess

    for f in Path(directory).glob("gauge_live*.db"):
        match = re.search(r"_(\d+)\.db$", f.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), directory)


def metrics_payload() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        return _multiprocess_metrics(directory), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _multiprocess_metrics(directory: str, attempts: int = 5) -> bytes:
    """Every process's metrics, read again when a process was creating its file at that instant.

    prometheus_client creates a process's `.db` file empty and sizes it a moment later; a read in between fails
    with `struct.error` (seen in CI as a 503 from a worker's /metrics while its dramatiq processes started). The
    window is a few microseconds, so a short pause and a second read find the file whole."""
    import struct

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    for attempt in range(attempts):
        _reap_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        try:
            return generate_latest(registry)
        except (struct.error, UnicodeDecodeError, FileNotFoundError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


class OpsServer:
    def __init__(
        self, host: str, port: int, *, liveness: Check = _always_ok, readiness: Check = _always_ok, role: str = "rwa"
    ) -> None:
        self.role = role
        self.liveness = liveness
        self.readiness = readiness
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        body, ctype = metrics_payload()
                        self._send(200, body, ctype)
                    elif path in ("/healthz", "/readyz"):
                        ok, details = (server.liveness if path == "/healthz" else server.readiness)()
                        payload = {
                            "status": ("ok" if path == "/healthz" else "ready") if ok else "unavailable",
                            "role": server.role,
                            "pid": os.getpid(),
                            **details,
                        }
                        self._send(200 if ok else 503, json.dumps(payload, default=str).encode(), "application/json")
                    else:
                        self._send(404, b'{"error": "not found"}', "application/json")
                except Exception as exc:  # noqa: BLE001  (a failing check is a 503 with its reason, never a crash)
                    log.warning("ops endpoint %s failed: %s", path, exc)
                    error = json.dumps({"status": "unavailable", "role": server.role, "error": type(exc).__name__})
                    self._send(503, error.encode(), "application/json")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (probes every few seconds: quiet)
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"ops-{role}", daemon=True)

    def start(self) -> OpsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_ops_server(host: str, port: int, **kw: Any) -> OpsServer | None:
    """Start it, or say why not (a busy port is not worth refusing to run for) and return None."""
    from rich.console import Console

    try:
        server = OpsServer(host, port, **kw).start()
    except OSError as exc:
        Console(stderr=True).print(
            f"[yellow]warning:[/] cannot serve the ops port on {host}:{port}: {exc.strerror or exc}", highlight=False
        )
        return None
    return server
