"""Operational endpoints: liveness, readiness (Postgres and Redis reachable; under `rwa serve --workers N`, all N
workers alive) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.metrics import DB_POOL_IN_USE, DB_POOL_SIZE

_STARTED = time.monotonic()
_SUPERVISOR = os.getppid()  # at import, in the worker: a later getppid() that differs means the supervisor died
# A worker started this long after its supervisor replaced one that died (startup of all workers takes ~2-5 s).
REPLACED_AFTER_S = 20.0


def worker_state(expected: int) -> tuple[dict[str, Any], bool]:
    """This worker's pid and uptime; under a supervisor of `expected` workers (uvicorn's Multiprocess, which
    replaces a worker that dies, even by SIGKILL or SIGSEGV), how many are alive and how many are replacements.
    Not ready while fewer than `expected` are alive: a worker is being replaced (or keeps dying)."""
    state: dict[str, Any] = {"pid": os.getpid(), "uptimeS": round(time.monotonic() - _STARTED, 1)}
    if expected < 1:  # not under `rwa serve` (uvicorn run directly, tests)
        return state, True
    if os.getppid() != _SUPERVISOR:  # orphaned: nothing replaces workers any more; this one should be stopped
        return {**state, "expected": expected, "alive": 0, "supervisor": "gone"}, False
    try:
        supervisor = psutil.Process(_SUPERVISOR)
        workers = [p for p in supervisor.children() if _is_worker(p)]
        started = supervisor.create_time()
        replaced = sum(1 for p in workers if p.create_time() > started + REPLACED_AFTER_S)
    except psutil.Error:  # the supervisor is gone: this worker is an orphan about to be stopped
        return {**state, "expected": expected, "alive": 0}, False
    state.update(expected=expected, alive=len(workers), replaced=replaced)
    return state, len(workers) >= expected


def _is_worker(process: psutil.Process) -> bool:
    try:
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return "resource_tracker" not in " ".join(process.cmdline())  # multiprocessing's helper, not a worker
    except psutil.Error:
        return False


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = request.app.state.services
    failing: list[str] = []

    async def check_postgres() -> None:
        async with services.session_factory() as session:
            await session.execute(text("SELECT 1"))

    async def check_redis() -> None:
        await services.redis.ping()

    for name, check in (("postgres", check_postgres), ("redis", check_redis)):
        try:
            await asyncio.wait_for(check(), timeout=2.0)
        except Exception:
            failing.append(name)
    worker, workers_ok = await asyncio.to_thread(worker_state, services.settings.serve_workers)
    if not workers_ok:
        failing.append("workers")
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing, "worker": worker}, status_code=503)
    return JSONResponse({"status": "ready", "worker": worker})


def observe_pool(engine: Any) -> None:
    if engine is not None:
        pool = engine.pool
        DB_POOL_IN_USE.set(pool.checkedout())
        DB_POOL_SIZE.set(pool.size())


async def sample_pool(services: Any, every_s: float = 5.0) -> None:
    """The pool gauges, kept fresh by each worker: under `rwa serve` /metrics is served by the supervisor's ops port
    (core/ops_server.py), which reads the workers' values and cannot ask their pools."""
    while True:
        observe_pool(services.engine)
        await asyncio.sleep(every_s)


async def metrics(request: Request) -> Response:
    """/metrics on the API port: only with METRICS_ON_API_PORT (the ops port serves it otherwise)."""
    from core.ops_server import metrics_payload

    observe_pool(request.app.state.services.engine)
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)
