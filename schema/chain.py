"""On-chain data from the indexer: per-chain indexer status, token holdings and transfers, historical balances.
Types and fields only; the work is in resolvers/holdings.py and resolvers/indexer.py.

`holdings_connection` / `transfers_connection` are what a `Token` type's `holdings` / `transfers` fields call
(with the token's own chain id and address), so the root fields and the Token fields share one code path,
including the authorization rule in resolvers/holdings.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from resolvers import holdings, indexer
from schema.pagination import Connection
from schema.permissions import authenticated
from schema.scalars import BigInt

_ACCESS = (
    "Staff (ADMIN, COMPLIANCE, ISSUER) see every holder; other callers must pass `holder` = one of "
    "their linked wallets. API keys act with their owner's roles."
)


@strawberry.type(description="A `rwa index backfill` handed to the chain's running indexer, with its progress.")
class IndexerBackfillRequest:
    id: int
    token: str | None = strawberry.field(description="Only this contract; null: every watched contract.")
    from_block: int
    to_block: int | None = strawberry.field(description="Null until started: then the finalized head.")
    state: str = strawberry.field(description="PENDING, RUNNING, DONE, FAILED or CANCELLED.")
    blocks_done: int
    blocks_total: int | None = strawberry.field(description="Blocks left to fetch when it started.")
    events: int = strawberry.field(description="Raw events newly written.")
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@strawberry.type(description="Where the indexer of one chain stands. Block numbers are null before its first run.")
class ChainIndexerStatus:
    chain_id: int
    chain: str = strawberry.field(description="Short name: ethereum, polygon, bsc.")
    head_block: int | None = strawberry.field(description="The node's head as last seen by the indexer.")
    safe_block: int | None
    finalized_block: int | None
    indexed_block: int | None
    lag: int | None = strawberry.field(description="headBlock - indexedBlock.")
    recent_events: int = strawberry.field(description="Events stored in the last `windowBlocks` indexed blocks.")
    window_blocks: int
    events_per_second: float | None = strawberry.field(
        description="recentEvents per second of chain time over that window; null when it spans no time."
    )
    updated_at: datetime | None = strawberry.field(description="When the indexer last moved its cursor.")
    state: str = strawberry.field(
        description=(
            "ok; stopped (a reorg below finality: see stoppedReason; an operator must act); failing (3 or more "
            "failed steps in a row: see lastError); not indexed."
        )
    )
    stopped_reason: str | None
    error_count: int = strawberry.field(description="Failed steps in a row (0 when the last step succeeded).")
    last_error: str | None
    backfills: list[IndexerBackfillRequest] = strawberry.field(
        description="Unfinished backfill requests and the last few finished ones, oldest first."
    )

    @classmethod
    def from_row(cls, r: indexer.ChainStatusRow) -> ChainIndexerStatus:
        return cls(
            chain_id=r.chain_id,
            chain=r.chain,
            head_block=r.head_block,
            safe_block=r.safe_block,
            finalized_block=r.finalized_block,
            indexed_block=r.indexed_block,
            lag=r.lag,
            recent_events=r.recent_events,
            window_blocks=r.window_blocks,
            events_per_second=r.events_per_second,
            updated_at=r.updated_at,
            state=r.state,
            stopped_reason=r.stopped_reason,
            error_count=r.error_count,
            last_error=r.last_error,
            backfills=[
                IndexerBackfillRequest(
                    id=b.id,
                    token=b.token,
                    from_block=b.from_block,
                    to_block=b.to_block,
                    state=b.state,
                    blocks_done=b.blocks_done,
                    blocks_total=b.blocks_total,
                    events=b.events,
                    error=b.error,
                    created_at=b.created_at,
                    finished_at=b.finished_at,
                )
                for b in r.backfills
            ],
        )


@strawberry.type(description="One holder's indexed position in one token (raw units; divide by 10^decimals).")
class TokenHolding:
    chain_id: int
    token: str
    holder: str
    balance: BigInt
    frozen_amount: BigInt = strawberry.field(description="Part of the balance frozen by an agent.")
    frozen: bool = strawberry.field(description="The whole address is frozen.")
    updated_block: int

    @classmethod
    def from_row(cls, r: holdings.HoldingRow) -> TokenHolding:
        return cls(
            chain_id=r.chain_id,
            token=r.token,
            holder=r.holder,
            balance=r.balance,
            frozen_amount=r.frozen_amount,
            frozen=r.frozen,
            updated_block=r.updated_block,
        )


@strawberry.type(description="One indexed Transfer event (mints come from, burns go to, the zero address).")
class TokenTransfer:
    chain_id: int
    token: str
    block_number: int
    block_hash: str
    log_index: int
    block_time: datetime | None
    tx_hash: str
    from_address: str
    to_address: str
    value: BigInt

    @classmethod
    def from_row(cls, r: holdings.TransferRow) -> TokenTransfer:
        return cls(
            chain_id=r.chain_id,
            token=r.token,
            block_number=r.block_number,
            block_hash=r.block_hash,
            log_index=r.log_index,
            block_time=r.block_time,
            tx_hash=r.tx_hash,
            from_address=r.from_address,
            to_address=r.to_address,
            value=r.value,
        )


@strawberry.type(description="A holder's balance at the end of a block, summed from indexed transfers.")
class HolderBalance:
    chain_id: int
    token: str
    holder: str
    balance: BigInt
    at_block: int
    indexed_block: int = strawberry.field(description="The newest block the index covers (the upper bound of atBlock).")


async def holdings_connection(info: Info, **arguments: Any) -> Connection[TokenHolding]:
    """`arguments`: resolvers.holdings.token_holdings' keywords, which type and check them."""
    page = await holdings.token_holdings(await info.context.session(), info.context.viewer, **arguments)
    return Connection.from_page(page, TokenHolding.from_row)


async def transfers_connection(info: Info, **arguments: Any) -> Connection[TokenTransfer]:
    """`arguments`: resolvers.holdings.token_transfers' keywords, which type and check them."""
    page = await holdings.token_transfers(await info.context.session(), info.context.viewer, **arguments)
    return Connection.from_page(page, TokenTransfer.from_row)


@strawberry.type
class Query:
    @strawberry.field(
        extensions=authenticated(),
        description=(
            "Per chain (or one): node head, safe, finalized and indexed blocks, lag and recent events/s, "
            "as the indexer last recorded them."
        ),
    )
    async def indexer_status(self, info: Info, chain_id: int | None = None) -> list[ChainIndexerStatus]:
        rows = await indexer.indexer_status(await info.context.session(), chain_id)
        return [ChainIndexerStatus.from_row(r) for r in rows]

    @strawberry.field(
        extensions=authenticated(),
        description=("Holders of a token, largest balance first; zero balances only with includeZero. " + _ACCESS),
    )
    async def token_holdings(
        self,
        info: Info,
        chain_id: int,
        token: str,
        holder: str | None = None,
        include_zero: bool = False,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TokenHolding]:
        return await holdings_connection(
            info,
            chain_id=chain_id,
            token=token,
            holder=holder,
            include_zero=include_zero,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    @strawberry.field(
        extensions=authenticated(),
        description=(
            "Transfers of a token by block and log index, newest first unless newestFirst is false; `holder` "
            "matches either side; fromBlock/toBlock are inclusive. " + _ACCESS
        ),
    )
    async def token_transfers(
        self,
        info: Info,
        chain_id: int,
        token: str,
        holder: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        newest_first: bool = True,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[TokenTransfer]:
        return await transfers_connection(
            info,
            chain_id=chain_id,
            token=token,
            holder=holder,
            from_block=from_block,
            to_block=to_block,
            newest_first=newest_first,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    @strawberry.field(
        extensions=authenticated(),
        description=(
            "A holder's balance at the end of atBlock (default: the indexed block), from indexed transfers. "
            "atBlock above the indexed block is BAD_USER_INPUT. " + _ACCESS
        ),
    )
    async def holder_balance(
        self, info: Info, chain_id: int, token: str, holder: str, at_block: int | None = None
    ) -> HolderBalance:
        r = await holdings.holder_balance(
            await info.context.session(),
            info.context.viewer,
            chain_id=chain_id,
            token=token,
            holder=holder,
            at_block=at_block,
        )
        return HolderBalance(
            chain_id=r.chain_id,
            token=r.token,
            holder=r.holder,
            balance=r.balance,
            at_block=r.at_block,
            indexed_block=r.indexed_block,
        )
