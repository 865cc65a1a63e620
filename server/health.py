"""Operational endpoints: liveness, readiness (Postgres and Redis reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.metrics import DB_POOL_IN_USE, DB_POOL_SIZE


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
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    engine = request.app.state.services.engine
    if engine is not None:
        pool = engine.pool
        DB_POOL_IN_USE.set(pool.checkedout())
        DB_POOL_SIZE.set(pool.size())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
