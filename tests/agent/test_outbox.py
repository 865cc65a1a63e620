"""agent.outbox.enqueue: one operation per business reference, in the caller's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from models.operations import ChainOperation, OperationState

TOKEN = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
SELLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def _transfer(args: list, business_ref: str) -> dict:
    """enqueue's keywords for a settlement's forced transfer from SELLER to BUYER."""
    return dict(
        kind="settlement.transfer",
        chain_id=1,
        contract=TOKEN,
        abi_name="SecurityToken",
        function="forcedTransfer",
        args=args,
        business_ref=business_ref,
    )


async def _rows(session: AsyncSession, business_ref: str) -> int:
    return await session.scalar(
        select(func.count()).select_from(ChainOperation).where(ChainOperation.business_ref == business_ref)
    )


async def test_enqueue_is_idempotent_per_business_ref(session: AsyncSession) -> None:
    first = await enqueue(session, **_transfer([SELLER, BUYER, 10**18], "settlement:abc"))
    # a replay with different arguments still returns the first row, unchanged
    again = await enqueue(session, **_transfer([SELLER, BUYER, 5], "settlement:abc"))
    assert again.id == first.id
    assert again.args == [SELLER, BUYER, str(10**18)]
    assert again.state is OperationState.PENDING and again.attempts == 0 and again.tx_hashes == []
    assert again.contract == "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # checksummed
    assert await _rows(session, "settlement:abc") == 1
    other = await enqueue(session, **_transfer([SELLER, BUYER, 1], "settlement:def"))
    assert other.id != first.id


async def test_enqueue_rolls_back_with_the_decision(session: AsyncSession) -> None:
    async with session.begin_nested() as sp:
        await enqueue(
            session,
            kind="payout.refund",
            chain_id=1,
            contract=TOKEN,
            abi_name="Stablecoin",
            function="transfer",
            args=[BUYER, 7],
            business_ref="refund:rolled-back",
            signer="treasury",
        )
        await sp.rollback()
    assert await _rows(session, "refund:rolled-back") == 0


@pytest.mark.parametrize(
    "bad",
    [
        dict(business_ref=""),
        dict(business_ref="x" * 201),
        dict(kind=""),
        dict(signer="s" * 21),
        dict(function="", value=0),
        dict(value=-1),
        dict(args=[1.5]),
    ],
)
async def test_enqueue_refuses_bad_input(session: AsyncSession, bad: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        await enqueue(session, **(_transfer([SELLER, BUYER, 1], "settlement:bad") | bad))
