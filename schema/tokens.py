"""Token type: on-chain facts from the tokens table; holders and transfers reuse schema/chain.py's connections
(resolvers/holdings.py: the indexer's holdings and token_transfers tables, with their access rule)."""

from __future__ import annotations

import uuid
from typing import TypeAlias

import strawberry
from strawberry.types import Info

from chains.registry import get_chain
from models.tokens import TokenKind as TokenKindModel
from resolvers.assets import token_reads
from resolvers.assets.loaders import db_lock, loader
from resolvers.assets.token_reads import TokenRow
from schema.chain import TokenHolding, TokenTransfer, holdings_connection, transfers_connection
from schema.lookups import found
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated
from schema.scalars import BigInt

strawberry.enum(TokenKindModel)
TokenKind: TypeAlias = TokenKindModel


@strawberry.type(description="A token contract on one chain. Amounts are raw integer units (divide by 10^decimals).")
class Token(Node):
    asset_id: uuid.UUID | None
    chain_id: int
    address: str = strawberry.field(description="EIP-55 checksummed contract address.")
    kind: TokenKind
    name: str
    symbol: str
    decimals: int
    total_supply: BigInt
    paused: bool
    start_block: int
    identity_registry: str | None = strawberry.field(
        description=(
            "The ERC-3643 identity registry the token checks transfers against (EIP-55); null for stablecoins."
        )
    )
    _row: strawberry.Private[TokenRow]

    @classmethod
    def from_row(cls, r: TokenRow) -> Token:
        return cls(
            id=r.id,
            asset_id=r.asset_id,
            chain_id=r.chain_id,
            address=r.address,
            kind=r.kind,
            name=r.name,
            symbol=r.symbol,
            decimals=r.decimals,
            total_supply=r.total_supply,
            paused=r.paused,
            start_block=r.start_block,
            identity_registry=r.identity_registry,
            _row=r,
        )

    @strawberry.field(description="Chain name (ethereum, polygon, bsc).")
    def chain_name(self) -> str:
        return get_chain(self.chain_id).name

    @strawberry.field(description="Addresses with a positive balance, from the indexer.")
    async def holder_count(self, info: Info) -> int:
        return await loader(info.context, "HolderCountByTokenLoader").load((self.chain_id, self.address))

    @strawberry.field(description="Holders by balance, largest first (same rules as Query.tokenHoldings).")
    async def holdings(
        self,
        info: Info,
        holder: str | None = None,
        include_zero: bool = False,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TokenHolding]:
        async with db_lock(info.context):
            return await holdings_connection(
                info,
                chain_id=self.chain_id,
                token=self.address,
                holder=holder,
                include_zero=include_zero,
                first=first,
                after=after,
                last=last,
                before=before,
            )

    @strawberry.field(description="Transfers, newest first (same rules as Query.tokenTransfers).")
    async def transfers(
        self,
        info: Info,
        holder: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TokenTransfer]:
        async with db_lock(info.context):
            return await transfers_connection(
                info,
                chain_id=self.chain_id,
                token=self.address,
                holder=holder,
                first=first,
                after=after,
                last=last,
                before=before,
            )


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(), description=("A token by id, or by chainId and address; null when there is none.")
    )
    async def token(
        self, info: Info, id: uuid.UUID | None = None, chain_id: int | None = None, address: str | None = None
    ) -> Token | None:
        async with db_lock(info.context) as session:
            row = await found(token_reads.get_token(session, id, chain_id, address))
        return None if row is None else Token.from_row(row)


async def load_token(info: Info, id: uuid.UUID) -> Token | None:
    """`node(id)` for a Token: what `token(id)` shows (any signed-in caller)."""
    if not info.context.viewer.authenticated:
        return None
    async with db_lock(info.context) as session:
        row = await found(token_reads.get_token(session, id))
    return None if row is None else Token.from_row(row)


register_node("Token", "tokens", load_token)
