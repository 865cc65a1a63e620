"""`rwa index verify`: indexed holdings of one token against `balanceOf` on the node, at one block.

At the indexed block the holdings table is compared as is; at an earlier block each holder's balance is
recomputed from the indexed transfers (sum in - sum out up to that block). The holder set is the holdings
table either way, and `totalSupply()` is compared with the sum of the indexed balances, which catches
holders the index missed. The indexed block (models.index_status.indexed_block_for) and the holdings are read in
one REPEATABLE READ transaction, so a running indexer cannot move them apart mid-read. The eth_calls go out
as batched JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from chains.inputs import ZERO_ADDRESS
from chains.rpc import RpcClient
from chains.rpc_params import block_param
from models.index_status import indexed_block_for
from models.tokens import Holding, TokenTransfer

BALANCE_OF = "0x70a08231"  # balanceOf(address)
TOTAL_SUPPLY = "0x18160ddd"  # totalSupply()


class VerifyError(Exception):
    """The verification cannot run (nothing indexed, block out of range, no contract): bad input."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    holder: str
    indexed: int
    onchain: int

    @property
    def difference(self) -> int:
        return self.indexed - self.onchain


@dataclass(slots=True)
class VerifyReport:
    chain_id: int
    token: str
    block: int
    holders_checked: int
    total_supply: int
    indexed_sum: int
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def supply_matches(self) -> bool:
        return self.total_supply == self.indexed_sum

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.supply_matches


async def indexed_balances(
    session: AsyncSession, chain_id: int, token: str, block: int | None, indexed: int
) -> dict[str, int]:
    """holder -> balance at `block` (None or `indexed`: the holdings table; earlier: from transfers)."""
    holders = {
        h: int(b)
        for h, b in (
            await session.execute(
                select(Holding.holder, Holding.balance).where(
                    Holding.chain_id == chain_id, Holding.token_address == token, Holding.holder != ZERO_ADDRESS
                )
            )
        ).all()
    }
    if block is None or block == indexed:
        return holders
    t = TokenTransfer
    for holder in holders:
        holders[holder] = 0
    # One grouped pass over the token's transfers up to `block`, credited and debited per address.
    signed = [
        select(t.to_address.label("holder"), t.value.label("delta")).where(
            t.chain_id == chain_id, t.token_address == token, t.block_number <= block
        ),
        select(t.from_address.label("holder"), (-t.value).label("delta")).where(
            t.chain_id == chain_id, t.token_address == token, t.block_number <= block
        ),
    ]
    moves = signed[0].union_all(signed[1]).subquery()
    rows = (await session.execute(select(moves.c.holder, func.sum(moves.c.delta)).group_by(moves.c.holder))).all()
    for holder, balance in rows:
        if holder in holders:
            holders[holder] = int(balance)
    return holders


async def onchain_balances(rpc: RpcClient, token: str, holders: Sequence[str], block: int) -> dict[str, int]:
    """`balanceOf(holder)` for every holder at `block`, as batched eth_calls."""
    tag = block_param(block)
    calls = [
        ("eth_call", [{"to": token, "data": BALANCE_OF + holder[2:].lower().rjust(64, "0")}, tag]) for holder in holders
    ]
    results = await rpc.batch(calls)
    return {holder: _uint(raw, token, block) for holder, raw in zip(holders, results)}


async def onchain_total_supply(rpc: RpcClient, token: str, block: int) -> int:
    return _uint(await rpc.eth_call(token, TOTAL_SUPPLY, block), token, block)


def _uint(raw: str, token: str, block: int) -> int:
    if not raw or raw == "0x":  # no code at that address then: calls to an EOA return empty data
        raise VerifyError(f"no ERC-20 contract at {token} at block {block}")
    return int(raw, 16)


async def verify_token(
    engine: AsyncEngine, rpc: RpcClient, chain_id: int, token: str, block: int | None = None
) -> VerifyReport:
    """Compare; raises VerifyError for input that cannot be verified and RpcError when the node fails."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin(), AsyncSession(bind=conn) as session:
            indexed = await indexed_block_for(session, chain_id, token)
            if indexed is None:
                raise VerifyError(f"nothing indexed yet on chain {chain_id} for token {token}")
            if block is not None and block > indexed:
                raise VerifyError(f"block {block} is above the indexed block {indexed} of chain {chain_id}")
            at = indexed if block is None else block
            has_rows = (
                await session.execute(
                    select(func.count())
                    .select_from(Holding)
                    .where(Holding.chain_id == chain_id, Holding.token_address == token)
                )
            ).scalar_one()
            has_transfers = (
                await session.execute(
                    select(TokenTransfer.log_index)
                    .where(TokenTransfer.chain_id == chain_id, TokenTransfer.token_address == token)
                    .limit(1)
                )
            ).first()
            if not has_rows and has_transfers is None:
                raise VerifyError(f"token {token} has no indexed holdings or transfers on chain {chain_id}")
            balances = await indexed_balances(session, chain_id, token, block, indexed)
    holders = sorted(balances)
    onchain = await onchain_balances(rpc, token, holders, at)
    supply = await onchain_total_supply(rpc, token, at)
    mismatches = [Mismatch(h, balances[h], onchain[h]) for h in holders if balances[h] != onchain[h]]
    return VerifyReport(
        chain_id=chain_id,
        token=token,
        block=at,
        holders_checked=len(holders),
        total_supply=supply,
        indexed_sum=sum(balances.values()),
        mismatches=mismatches,
    )
