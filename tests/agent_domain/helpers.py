"""Shared helpers of the agent-domain tests: fabricate what the executor and the indexer would write (an operation's
broadcast hash, an indexed transfer, the operation's completion) so decisions and handlers are tested directly."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent import handlers
from models.operations import ChainOperation, OperationState
from models.tokens import Holding, TokenTransfer


def tx_hash() -> str:
    return "0x" + secrets.token_hex(32)


async def op_by_ref(session: AsyncSession, ref: str) -> ChainOperation:
    return (
        await session.execute(
            select(ChainOperation).where(ChainOperation.business_ref == ref).execution_options(populate_existing=True)
        )
    ).scalar_one()


async def broadcast(session: AsyncSession, op: ChainOperation) -> str:
    """What the executor writes when it sends: a hash (kept in tx_hashes) and BROADCAST."""
    h = tx_hash()
    await session.execute(
        update(ChainOperation)
        .where(ChainOperation.id == op.id)
        .values(state=OperationState.BROADCAST, tx_hash=h, tx_hashes=[*op.tx_hashes, h])
    )
    await session.refresh(op)
    return h


async def index_transfer(
    session: AsyncSession, chain_id: int, token: str, frm: str, to: str, units: int, txh: str, block: int = 100
) -> None:
    """What the indexer writes for a Transfer: the row and both holdings moved (final or not)."""
    session.add(
        TokenTransfer(
            chain_id=chain_id,
            block_hash=tx_hash(),
            log_index=0,
            block_number=block,
            tx_hash=txh,
            token_address=token,
            from_address=frm,
            to_address=to,
            value=units,
        )
    )
    for holder, delta in ((frm, -units), (to, units)):
        h = await session.get(Holding, (chain_id, token, holder))
        if h is None:
            session.add(
                Holding(chain_id=chain_id, token_address=token, holder=holder, balance=delta, updated_block=block)
            )
        else:
            h.balance = int(h.balance) + delta
    await session.flush()


async def complete(session: AsyncSession, op: ChainOperation, *, confirmed: bool, reason: str = "") -> None:
    """What the executor does at completion: the state and the registered handler, in one transaction."""
    handlers.load_effects()
    op.state = OperationState.CONFIRMED if confirmed else OperationState.FAILED
    if not confirmed:
        op.revert_reason = reason
    await session.flush()
    if confirmed:
        await handlers.run_confirmed(session, op)
    else:
        await handlers.run_failed(session, op, reason)
    await session.flush()


async def paid_in_stablecoin(
    session: AsyncSession, m: Any, user_id: uuid.UUID, *, state: Any, asked: int, received: int, **extra: Any
) -> Any:
    """A stablecoin payment of the market's quote token (6 decimals): `asked` asked, `received` received from one
    payer (its PaymentMatch), `asked` credited to the user's cash; flushed, not committed. `extra`: more columns."""
    from models.payments import Payment, PaymentMatch, PaymentMethod
    from models.tokens import Token, TokenKind
    from resolvers import ledger
    from tests.trading.factories import random_address

    usdc = (
        await session.execute(select(Token).where(Token.symbol == m.quote, Token.kind == TokenKind.STABLECOIN))
    ).scalar_one()
    p = Payment(
        id=uuid.uuid4(),
        user_id=user_id,
        method=PaymentMethod.STABLECOIN,
        state=state,
        amount=Decimal(asked),
        currency=m.quote,
        idempotency_key="p",
        chain_id=m.chain_id,
        token_address=usdc.address,
        decimals=6,
        deposit_address=random_address(),
        amount_units=asked * 10**6,
        received_units=received * 10**6,
        final_units=received * 10**6,
        received_amount=Decimal(received),
        credited_amount=Decimal(asked),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        **extra,
    )
    session.add(p)
    await session.flush()
    session.add(
        PaymentMatch(
            chain_id=m.chain_id,
            block_hash=tx_hash(),
            log_index=0,
            payment_id=p.id,
            block_number=5,
            tx_hash=tx_hash(),
            from_address=random_address(),
            value=received * 10**6,
        )
    )
    await ledger.credit_deposit(session, user_id, Decimal(asked), m.quote, f"payment:{p.id}:credit")
    return p
