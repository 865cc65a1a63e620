"""Per-request DataLoaders for the asset graph: one SQL statement per loader per batch.

    ctx.loader("IssuerByIdLoader", issuer_by_id).load(user_id)

All loaders of a request share the request's session, and an asyncio.Lock keeps their batches from using
that one connection at the same time (asyncpg allows one statement in flight per connection).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from sqlalchemy import Select, func, select, tuple_
from strawberry.dataloader import DataLoader

from models.assets import Asset, Valuation
from models.identity import User
from models.tokens import Holding, Token
from resolvers.assets.token_reads import TOKEN_COLUMNS, TokenRow, token_row
from resolvers.assets.valuations import COLUMNS as VALUATION_COLUMNS
from resolvers.assets.valuations import ValuationRow
from server.context import Context

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


def _loader(ctx: Context, batch: Callable[[list[K]], Awaitable[list[V]]]) -> DataLoader[K, V]:
    return DataLoader(load_fn=batch, max_batch_size=500)


def issuer_by_id(ctx: Context) -> DataLoader[uuid.UUID, IssuerRow | None]:
    async def batch(ids: list[uuid.UUID]) -> list[IssuerRow | None]:
        rows = await run(ctx, select(User.id, User.email).where(User.id.in_(ids)))
        found = {r[0]: IssuerRow(r[0], r[1]) for r in rows}
        return [found.get(i) for i in ids]
    return _loader(ctx, batch)


def tokens_by_asset(ctx: Context) -> DataLoader[uuid.UUID, list[TokenRow]]:
    async def batch(ids: list[uuid.UUID]) -> list[list[TokenRow]]:
        rows = await run(ctx, select(*TOKEN_COLUMNS).where(Token.asset_id.in_(ids))
                         .order_by(Token.asset_id, Token.created_at, Token.id))
        grouped: dict[uuid.UUID, list[TokenRow]] = defaultdict(list)
        for r in rows:
            grouped[r[1]].append(token_row(tuple(r)))
        return [grouped.get(i, []) for i in ids]
    return _loader(ctx, batch)


def latest_valuation_by_asset(ctx: Context) -> DataLoader[uuid.UUID, ValuationRow | None]:
    """Keyed by asset id; follows the denormalized assets.latest_valuation_id (a primary-key join)."""
    async def batch(ids: list[uuid.UUID]) -> list[ValuationRow | None]:
        rows = await run(ctx, select(*VALUATION_COLUMNS).join(Asset, Asset.latest_valuation_id == Valuation.id)
                         .where(Asset.id.in_(ids)))
        found = {r[1]: ValuationRow(*r) for r in rows}
        return [found.get(i) for i in ids]
    return _loader(ctx, batch)


def holder_count_by_token(ctx: Context) -> DataLoader[tuple[int, str], int]:
    """Keyed by (chain_id, checksummed address): holders with a positive balance."""
    async def batch(keys: list[tuple[int, str]]) -> list[int]:
        rows = await run(ctx, select(Holding.chain_id, Holding.token_address, func.count())
                         .where(tuple_(Holding.chain_id, Holding.token_address).in_(keys), Holding.balance > 0)
                         .group_by(Holding.chain_id, Holding.token_address))
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

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        await self.lock.acquire()
        return await self.ctx.session()

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()
