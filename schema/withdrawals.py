"""Withdrawals (cash out in stablecoin): request, ADMIN approval above the threshold, the caller's list and live
updates, the staff list. Types and fields only; the work is in resolvers/payments/withdrawals.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from models.identity import Role
from models.withdrawals import Withdrawal as WithdrawalModel
from models.withdrawals import WithdrawalState as WithdrawalStateModel
from resolvers.assets.validation import trim
from resolvers.pagination import keyset_page
from resolvers.payments import withdrawals
from schema.mutations import mutation
from schema.node import Node, register_node
from schema.pagination import Connection
from schema.permissions import authenticated, requires
from schema.personal_streams import personal_stream
from schema.scalars import BigInt
from schema.sharing import PRIVATE

strawberry.enum(
    WithdrawalStateModel,
    description=(
        "PENDING_APPROVAL (above the approval threshold) -> APPROVED (payout queued) -> COMPLETED (the transfer is final "
        "on chain) | FAILED (cash given back); PENDING_APPROVAL -> REJECTED (cash given back)."
    ),
)
WithdrawalState: TypeAlias = WithdrawalStateModel
STAFF = (Role.ADMIN, Role.COMPLIANCE)


@strawberry.type(description="Cash paid out in stablecoin to one of the owner's wallets.")
class Withdrawal(Node):
    user_id: uuid.UUID
    currency: str
    amount: Decimal
    chain_id: int
    token_address: str
    to_address: str
    amount_units: BigInt
    state: WithdrawalState
    reason: str | None = strawberry.field(description="Why it was REJECTED or FAILED.")
    tx_hash: str | None
    block_number: int | None
    decided_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, w: Any, payout: tuple[str | None, int | None] | None = None) -> Withdrawal:
        """From the row; `payout` (withdrawals.payouts_in_flight) gives an APPROVED one's hash and block before its
        row records them at completion."""
        tx_hash, block_number = w.tx_hash, w.block_number
        if payout is not None and tx_hash is None:
            tx_hash, block_number = payout
        return cls(
            id=w.id,
            user_id=w.user_id,
            currency=w.currency,
            amount=trim(w.amount),
            chain_id=w.chain_id,
            token_address=w.token_address,
            to_address=w.to_address,
            amount_units=int(w.amount_units),
            state=w.state,
            reason=w.reason,
            tx_hash=tx_hash,
            block_number=block_number,
            decided_at=w.decided_at,
            created_at=w.created_at,
            updated_at=w.updated_at,
        )


@strawberry.type(description="A live change of one of the caller's withdrawals.")
class WithdrawalUpdate:
    id: uuid.UUID
    state: WithdrawalState
    amount: Decimal
    currency: str
    tx_hash: str | None
    block_number: int | None
    reason: str | None


def _page(info: Info, stmt, first, after, last, before):
    async def run():
        session = await info.context.session()
        page = await keyset_page(
            session,
            stmt,
            [WithdrawalModel.created_at, WithdrawalModel.id],
            descending=True,
            first=first,
            after=after,
            last=last,
            before=before,
        )
        payouts = await withdrawals.payouts_in_flight(session, page.rows)
        return Connection.from_page(page, lambda w: Withdrawal.of(w, payouts.get(w.id)))

    return run()


@strawberry.type
class Query:
    @strawberry.field(extensions=authenticated(), description="The caller's withdrawals, newest first.")
    async def my_withdrawals(
        self,
        info: Info,
        state: WithdrawalState | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Withdrawal]:
        stmt = select(WithdrawalModel).where(WithdrawalModel.user_id == info.context.viewer.require_user())
        if state is not None:
            stmt = stmt.where(WithdrawalModel.state == state)
        return await _page(info, stmt, first, after, last, before)

    @strawberry.field(
        extensions=requires(*STAFF),
        description=("Everyone's withdrawals, newest first (state PENDING_APPROVAL: the approval queue)."),
    )
    async def withdrawals(
        self,
        info: Info,
        state: WithdrawalState | None = None,
        user_id: uuid.UUID | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Withdrawal]:
        stmt = select(WithdrawalModel)
        if state is not None:
            stmt = stmt.where(WithdrawalModel.state == state)
        if user_id is not None:
            stmt = stmt.where(WithdrawalModel.user_id == user_id)
        return await _page(info, stmt, first, after, last, before)


def _staff(info: Info) -> bool:
    return info.context.viewer.has_role(*(r.value for r in STAFF))


@strawberry.type
class Mutation:
    @mutation(
        extensions=authenticated(),
        description=(
            "Cash out `amount` of a stablecoin `currency` to one of the caller's linked, verified wallets (idempotent per "
            "idempotencyKey). The cash is reserved at once; above the approval threshold an ADMIN approves first. "
            "Error codes: BAD_USER_INPUT, LIMIT_EXCEEDED (the per-request/daily limits), NOT_FOUND (not your wallet), "
            "INSUFFICIENT_FUNDS, IDEMPOTENCY_KEY_REUSED; FORBIDDEN (KYC_NOT_APPROVED, WALLET_NOT_VERIFIED) stays a "
            "top-level error."
        ),
    )
    async def request_withdrawal(
        self, info: Info, currency: str, amount: Decimal, wallet: str, idempotency_key: str, chain_id: int | None = None
    ) -> Withdrawal:
        ctx = info.context
        user_id = ctx.viewer.require_user()
        req = withdrawals.WithdrawalRequest(currency, amount, wallet, idempotency_key, chain_id)
        w, _ = await withdrawals.request(await ctx.session(), ctx.settings, user_id, req, request_id=ctx.request_id)
        return Withdrawal.of(w)

    @mutation(extensions=requires(Role.ADMIN), description="PENDING_APPROVAL -> APPROVED: pay it out.")
    async def approve_withdrawal(self, info: Info, id: uuid.UUID, reason: str | None = None) -> Withdrawal:
        ctx = info.context
        actor = ctx.viewer.require_user()
        return Withdrawal.of(
            await withdrawals.decide(
                await ctx.session(), id, approve=True, actor_id=actor, reason=reason, request_id=ctx.request_id
            )
        )

    @mutation(extensions=requires(Role.ADMIN), description="PENDING_APPROVAL -> REJECTED: cash released.")
    async def reject_withdrawal(self, info: Info, id: uuid.UUID, reason: str) -> Withdrawal:
        ctx = info.context
        actor = ctx.viewer.require_user()
        return Withdrawal.of(
            await withdrawals.decide(
                await ctx.session(), id, approve=False, actor_id=actor, reason=reason, request_id=ctx.request_id
            )
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        extensions=authenticated(),
        metadata=PRIVATE,
        description=("The caller's withdrawals as their payout completes or fails on chain."),
    )
    async def my_withdrawals(self, info: Info) -> AsyncGenerator[WithdrawalUpdate, None]:
        user_id = info.context.viewer.require_user()
        async for e in personal_stream(info, f"user:{user_id}:withdrawals"):
            yield WithdrawalUpdate(
                id=uuid.UUID(e["id"]),
                state=WithdrawalStateModel(e["state"]),
                amount=trim(Decimal(e["amount"])),
                currency=e["currency"],
                tx_hash=e.get("txHash"),
                block_number=e.get("blockNumber"),
                reason=e.get("reason"),
            )


async def load_withdrawal(info: Info, id: uuid.UUID) -> Withdrawal | None:
    """`node(id)` for a Withdrawal: its owner's (like `myWithdrawals`), or any for ADMIN/COMPLIANCE (`withdrawals`)."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    session = await info.context.session()
    w = await session.get(WithdrawalModel, id)
    if w is None or not (w.user_id == user_id or _staff(info)):
        return None
    return Withdrawal.of(w, (await withdrawals.payouts_in_flight(session, [w])).get(w.id))


register_node("Withdrawal", "withdrawals", load_withdrawal)
