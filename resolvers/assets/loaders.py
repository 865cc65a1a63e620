"""Per-request DataLoaders for the asset graph: one SQL statement per loader per batch.

    ctx.loader("IssuerByIdLoader", issuer_by_id).load(user_id)

All loaders of a request share the request's session, and an asyncio.Lock keeps their batches from using
that one connection at the same time (asyncpg allows one statement in flight per connection).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select
from strawberry.dataloader import DataLoader

from models.assets import ValuationMethod
from resolvers.assets.token_reads import TOKEN_COLUMNS, TokenRow, token_row
from resolvers.assets.valuations import COLUMNS as VALUATION_COLUMNS
from resolvers.assets.valuations import ValuationRow
from resolvers.context import Context

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class IssuerRow:
    id: uuid.UUID
    email: str


def _lock(ctx: Context) -> asyncio.Lock:
    return ctx.loader("db-lock", lambda _: asyncio.Lock())


async def run(ctx: Context, stmt: Select) -> Sequence[Any]:
    async with _lock(ctx):
        session = await ctx.session()
        return (await session.execute(stmt)).all()


async def run_sql(ctx: Context, sql: str, *params: Any) -> Sequence[Any]:
    """A fixed SQL string (Context.fetch_all: the read pool for queries, else the session's connection): no
    per-call compilation, and `= ANY($1)` keeps one prepared statement whatever the batch size (an expanded IN
    list would be a new statement per size)."""
    async with _lock(ctx):
        return await ctx.fetch_all(sql, *params)


def _loader(ctx: Context, batch: Callable[[list[K]], Awaitable[list[V]]]) -> DataLoader[K, V]:
    return DataLoader(load_fn=batch, max_batch_size=500)


ISSUERS_SQL = "SELECT id, email FROM users WHERE id = ANY($1::uuid[])"
TOKENS_SQL = (
    f"SELECT {', '.join(c.key for c in TOKEN_COLUMNS)} FROM tokens WHERE asset_id = ANY($1::uuid[]) "
    "ORDER BY asset_id, created_at, id"
)
LATEST_SQL = (
    f"SELECT {', '.join('v.' + c.key for c in VALUATION_COLUMNS)} FROM assets a "
    "JOIN valuations v ON v.id = a.latest_valuation_id WHERE a.id = ANY($1::uuid[])"
)
HOLDERS_SQL = (
    "SELECT h.chain_id, h.token_address, count(*) FROM holdings h "
    "JOIN unnest($1::int[], $2::text[]) AS k(chain_id, address) "
    "ON h.chain_id = k.chain_id AND h.token_address = k.address "
    "WHERE h.balance > 0 GROUP BY h.chain_id, h.token_address"
)


def issuer_by_id(ctx: Context) -> DataLoader[uuid.UUID, IssuerRow | None]:
    async def batch(ids: list[uuid.UUID]) -> list[IssuerRow | None]:
        found = {r[0]: IssuerRow(r[0], r[1]) for r in await run_sql(ctx, ISSUERS_SQL, ids)}
        return [found.get(i) for i in ids]

    return _loader(ctx, batch)


def tokens_by_asset(ctx: Context) -> DataLoader[uuid.UUID, list[TokenRow]]:
    async def batch(ids: list[uuid.UUID]) -> list[list[TokenRow]]:
        grouped: dict[uuid.UUID, list[TokenRow]] = defaultdict(list)
        for r in await run_sql(ctx, TOKENS_SQL, ids):
            grouped[r[1]].append(token_row(tuple(r)))
        return [grouped.get(i, []) for i in ids]

    return _loader(ctx, batch)


def valuation_row(values: Sequence[Any]) -> ValuationRow:
    """A ValuationRow from driver SQL's columns (VALUATION_COLUMNS order; the method as its enum's text)."""
    row = ValuationRow(*values)
    row.method = _METHODS.get(row.method) or ValuationMethod(row.method)
    return row


_METHODS = {m.value: m for m in ValuationMethod}


def latest_valuation_by_asset(ctx: Context) -> DataLoader[uuid.UUID, ValuationRow | None]:
    """Keyed by asset id; follows the denormalized assets.latest_valuation_id (a primary-key join)."""

    async def batch(ids: list[uuid.UUID]) -> list[ValuationRow | None]:
        found = {}
        for r in await run_sql(ctx, LATEST_SQL, ids):
            row = valuation_row(r)
            found[row.asset_id] = row
        return [found.get(i) for i in ids]

    return _loader(ctx, batch)


def holder_count_by_token(ctx: Context) -> DataLoader[tuple[int, str], int]:
    """Keyed by (chain_id, checksummed address): holders with a positive balance."""

    async def batch(keys: list[tuple[int, str]]) -> list[int]:
        rows = await run_sql(ctx, HOLDERS_SQL, [k[0] for k in keys], [k[1] for k in keys])
        found = {(r[0], r[1]): int(r[2]) for r in rows}
        return [found.get(k, 0) for k in keys]

    return _loader(ctx, batch)


LOADERS: dict[str, Callable[[Context], DataLoader[Any, Any]]] = {
    "IssuerByIdLoader": issuer_by_id,
    "TokensByAssetLoader": tokens_by_asset,
    "LatestValuationByAssetLoader": latest_valuation_by_asset,
    "HolderCountByTokenLoader": holder_count_by_token,
}


def loader(ctx: Context, name: str) -> DataLoader[Any, Any]:
    return ctx.loader(name, LOADERS[name])


class db_lock:  # noqa: N801 - used as `async with db_lock(ctx) as session`
    """The request's session, held exclusively (concurrent field resolvers share one connection)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = _lock(ctx)

    async def __aenter__(self):
        await self.lock.acquire()
        return await self.ctx.session()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()
