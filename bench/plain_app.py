"""Baseline for API benchmarks: a plain Starlette + asyncpg JSON endpoint doing the same database read."""

from __future__ import annotations

import contextlib
import os
import uuid

import asyncpg
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app() -> Starlette:
    dsn = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql").render_as_string(hide_password=False)
    user_id = uuid.UUID(os.environ["BENCH_USER_ID"])
    pool: dict[str, asyncpg.Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        pool["p"] = await asyncpg.create_pool(dsn, min_size=5, max_size=10)
        yield
        await pool["p"].close()

    async def me(request: Request) -> JSONResponse:
        await request.body()
        row = await pool["p"].fetchrow("SELECT id, email, roles FROM users WHERE id = $1", user_id)
        return JSONResponse(
            {"data": {"me": {"id": str(row["id"]), "email": row["email"], "roles": list(row["roles"])}}}
        )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/me", me, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan)
