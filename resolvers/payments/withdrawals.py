"""Withdrawals: an investor cashes out in stablecoin to one of its own linked, verified wallets.

    requestWithdrawal(input: {currency, amount, wallet, idempotencyKey[, chainId]})
      -> cash reserved at once: user AVAILABLE -> platform WITHDRAWALS_PENDING (INSUFFICIENT_FUNDS: CONFLICT)
      -> amount <= WITHDRAWAL_APPROVAL_THRESHOLD: APPROVED, payout queued in the same transaction
         above it: PENDING_APPROVAL until an ADMIN (not the requester) approves (payout queued) or rejects (released)
    payout ("payout.withdrawal", business_ref "withdrawal:<id>", Stablecoin.transfer(wallet, units), treasury signer)
      -> CONFIRMED (the Transfer indexed and final): COMPLETED, WITHDRAWALS_PENDING -> WITHDRAWALS (final)
      -> FAILED/CANCELED: FAILED with the reason, WITHDRAWALS_PENDING -> AVAILABLE (reversed)

Checks, in order, each a typed error that changes nothing: the idempotency key (the same key and parameters return
the same withdrawal; other parameters: CONFLICT IDEMPOTENCY_KEY_REUSED), the currency (a stablecoin the platform
knows; chainId required when it exists on several chains), the amount (positive, at most the token's decimals,
WITHDRAWAL_MIN..WITHDRAWAL_MAX, and the caller's requests of the last 24 h not REJECTED/FAILED within
WITHDRAWAL_DAILY_MAX: BAD_USER_INPUT reason LIMIT_EXCEEDED), the wallet (linked to the caller: NOT_FOUND; KYC APPROVED
and, when the chain has identity registries, registered in one: FORBIDDEN WALLET_NOT_VERIFIED). Requests of one user
are serialized (advisory lock) so two concurrent requests cannot both pass the daily limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.outbox import enqueue
from core.errors import BadUserInput, Conflict, Forbidden, NotFound
from core.settings import Settings
from models.identity import KycCase, KycStatus, Wallet
from models.ledger import AccountKind
from models.operations import ChainOperation
from models.tokens import Token, TokenKind
from models.withdrawals import Withdrawal, WithdrawalState
from resolvers import ledger
from resolvers.audit import record
from resolvers.idempotency_keys import check_key
from resolvers.identity.kyc_states import effective_status
from resolvers.identity.wallets import checksum
from resolvers.payments.intents import parse_amount, to_units
from resolvers.raw_sql import pg

KIND = "payout.withdrawal"
W = WithdrawalState
MAX_REASON = 500


def business_ref(withdrawal_id: uuid.UUID) -> str:
    return f"withdrawal:{withdrawal_id}"


_PAYOUTS = """SELECT o.business_ref, coalesce(o.mined_tx_hash, o.tx_hash) AS tx_hash, o.mined_block
FROM chain_operations o WHERE o.business_ref = ANY($1::text[])"""


async def payouts_in_flight(session: AsyncSession, rows: list[Any]) -> dict[uuid.UUID, tuple[str | None, int | None]]:
    """withdrawal id -> (tx hash, mined block) of its payout operation, for the APPROVED withdrawals of `rows`:
    their row gets the hash only when the payout completes or fails, while the operation has it from its first
    broadcast (its mined block once mined). One statement for a page."""
    ids = [w.id for w in rows if w.state is W.APPROVED and w.tx_hash is None]
    if not ids:
        return {}
    found = await (await pg(session)).fetch(_PAYOUTS, [business_ref(i) for i in ids])
    return {
        uuid.UUID(r["business_ref"].removeprefix("withdrawal:")): (
            r["tx_hash"],
            None if r["mined_block"] is None else int(r["mined_block"]),
        )
        for r in found
    }


@dataclass(frozen=True)
class WithdrawalRequest:
    currency: str
    amount: Decimal
    wallet: str
    idempotency_key: str
    chain_id: int | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _stablecoin(session: AsyncSession, currency: str, chain_id: int | None) -> Token:
    code = currency.strip().upper()
    if not 1 <= len(code) <= 16:
        raise BadUserInput("currency must have 1 to 16 characters", field="currency")
    stmt = select(Token).where(Token.kind == TokenKind.STABLECOIN, Token.symbol == code)
    if chain_id is not None:
        stmt = stmt.where(Token.chain_id == chain_id)
    tokens = list((await session.execute(stmt.order_by(Token.chain_id, Token.address))).scalars())
    if not tokens:
        raise BadUserInput(
            f"no {code} stablecoin" + (f" on chain {chain_id}" if chain_id is not None else ""), field="currency"
        )
    if len(tokens) > 1:
        raise BadUserInput(
            f"{code} exists on several chains: pass chainId",
            field="chainId",
            chains=sorted({t.chain_id for t in tokens}),
        )
    return tokens[0]


async def _check_wallet(session: AsyncSession, user_id: uuid.UUID, address: str, chain_id: int, now: datetime) -> str:
    wallet = checksum(address)
    owned = (
        await session.execute(select(Wallet.id).where(Wallet.address == wallet, Wallet.user_id == user_id))
    ).scalar_one_or_none()
    if owned is None:
        raise NotFound("no such wallet on your account", field="wallet")
    case = (await session.execute(select(KycCase).where(KycCase.user_id == user_id))).scalar_one_or_none()
    if case is None or effective_status(case.status, case.expires_at, now) is not KycStatus.APPROVED:
        raise Forbidden("withdrawals need an APPROVED KYC", reason="KYC_NOT_APPROVED")
    conn = await pg(session)
    registries = await conn.fetchval(
        "SELECT count(DISTINCT identity_registry) FROM tokens WHERE chain_id = $1 AND kind = 'SECURITY' "
        "AND identity_registry IS NOT NULL",
        chain_id,
    )
    if registries and not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM identities WHERE chain_id = $1 AND investor = $2 AND registered)",
        chain_id,
        wallet,
    ):
        raise Forbidden(
            "the wallet is not verified on chain yet (not in an identity registry of this chain)",
            field="wallet",
            reason="WALLET_NOT_VERIFIED",
        )
    return wallet


def _same(w: Withdrawal, token: Token, amount: Decimal, wallet: str) -> bool:
    return (w.chain_id, w.token_address, w.amount, w.to_address) == (token.chain_id, token.address, amount, wallet)


async def request(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    req: WithdrawalRequest,
    *,
    request_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Withdrawal, bool]:
    """Create the withdrawal (or return the one created with this key: created=False). Does not commit."""
    now = now or utcnow()
    key = req.idempotency_key
    check_key(key, field="idempotencyKey", max_chars=120, required=True)
    token = await _stablecoin(session, req.currency, req.chain_id)
    amount = parse_amount(req.amount, token.decimals)
    await (await pg(session)).execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"withdrawals:{user_id}")
    existing = (
        await session.execute(
            select(Withdrawal).where(Withdrawal.user_id == user_id, Withdrawal.idempotency_key == key)
        )
    ).scalar_one_or_none()
    wallet = checksum(req.wallet)
    if existing is not None:
        if not _same(existing, token, amount, wallet):
            raise Conflict(
                "idempotencyKey was already used for a different withdrawal", reason="IDEMPOTENCY_KEY_REUSED"
            )
        return existing, False
    if amount < settings.withdrawal_min or amount > settings.withdrawal_max:
        raise BadUserInput(
            f"amount must be between {settings.withdrawal_min} and {settings.withdrawal_max}",
            field="amount",
            reason="LIMIT_EXCEEDED",
        )
    today = await (await pg(session)).fetchval(
        "SELECT coalesce(sum(amount), 0) FROM withdrawals WHERE user_id = $1 AND currency = $2 AND created_at > $3 "
        "AND state NOT IN ('REJECTED', 'FAILED')",
        user_id,
        token.symbol.upper(),
        now - timedelta(days=1),
    )
    if today + amount > settings.withdrawal_daily_max:
        # plain decimal text, as the Decimal scalar writes it: the NUMERIC sum read "6065.000000000000000000 left"
        left = format(max(settings.withdrawal_daily_max - today, 0).normalize(), "f")
        raise BadUserInput(
            f"at most {settings.withdrawal_daily_max} {token.symbol} per 24 hours ({left} left)",
            field="amount",
            reason="LIMIT_EXCEEDED",
            remaining=left,
        )
    wallet = await _check_wallet(session, user_id, wallet, token.chain_id, now)
    needs_approval = amount > settings.withdrawal_approval_threshold
    w = Withdrawal(
        id=uuid.uuid4(),
        user_id=user_id,
        currency=token.symbol.upper(),
        amount=amount,
        chain_id=token.chain_id,
        token_address=token.address,
        to_address=wallet,
        amount_units=to_units(amount, token.decimals),
        idempotency_key=key,
        state=W.PENDING_APPROVAL if needs_approval else W.APPROVED,
        created_at=now,
        updated_at=now,
    )
    session.add(w)
    await session.flush()
    await ledger.post(
        session,
        kind="WITHDRAWAL_RESERVE",
        reference=f"withdrawal:{w.id}:reserve",
        currency=w.currency,
        legs=[(ledger.UserAccount(user_id), -amount), (ledger.Platform(AccountKind.WITHDRAWALS_PENDING), amount)],
        details={"withdrawalId": str(w.id)},
    )
    if not needs_approval:
        await _enqueue(session, w, user_id)
    record(
        session,
        actor_id=user_id,
        action="withdrawal.request",
        target_type="withdrawal",
        target_id=w.id,
        request_id=request_id,
        details={
            "amount": str(amount),
            "currency": w.currency,
            "chainId": w.chain_id,
            "wallet": wallet,
            "state": w.state.value,
        },
    )
    return w, True


async def _enqueue(session: AsyncSession, w: Withdrawal, actor_id: uuid.UUID | None) -> ChainOperation:
    return await enqueue(
        session,
        kind=KIND,
        chain_id=w.chain_id,
        contract=w.token_address,
        abi_name="Stablecoin",
        function="transfer",
        args=[w.to_address, int(w.amount_units)],
        business_ref=business_ref(w.id),
        signer="treasury",
        actor_id=actor_id,
    )


async def _locked(session: AsyncSession, withdrawal_id: uuid.UUID) -> Withdrawal:
    w = (
        await session.execute(
            select(Withdrawal)
            .where(Withdrawal.id == withdrawal_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if w is None:
        raise NotFound("withdrawal not found", field="id")
    return w


def _reason(reason: str | None) -> str:
    why = " ".join((reason or "").split())
    if not 1 <= len(why) <= MAX_REASON:
        raise BadUserInput(f"reason must have 1 to {MAX_REASON} characters", field="reason")
    return why


async def decide(
    session: AsyncSession,
    withdrawal_id: uuid.UUID,
    *,
    approve: bool,
    actor_id: uuid.UUID,
    reason: str | None = None,
    request_id: str | None = None,
) -> Withdrawal:
    """ADMIN: PENDING_APPROVAL -> APPROVED (payout queued) | REJECTED (cash released). Nobody decides on their own
    withdrawal. Does not commit."""
    why = _reason(reason) if not approve or reason else None
    w = await _locked(session, withdrawal_id)
    if w.user_id == actor_id:
        raise Forbidden("nobody approves or rejects their own withdrawal")
    if w.state is not W.PENDING_APPROVAL:
        raise Conflict(f"a {w.state.value} withdrawal is not awaiting approval", reason="INVALID_STATE")
    now = utcnow()
    if approve:  # still the owner's, still verified, KYC still approved: else the ADMIN rejects it
        await _check_wallet(session, w.user_id, w.to_address, w.chain_id, now)
    w.decided_by, w.decided_at, w.updated_at, w.reason = actor_id, now, now, why
    if approve:
        w.state = W.APPROVED
        await _enqueue(session, w, actor_id)
    else:
        w.state = W.REJECTED
        await _release(session, w, "rejected")
    record(
        session,
        actor_id=actor_id,
        action="withdrawal.approve" if approve else "withdrawal.reject",
        target_type="withdrawal",
        target_id=w.id,
        request_id=request_id,
        details={"amount": str(w.amount), "currency": w.currency, **({"reason": why} if why else {})},
    )
    await session.flush()
    return w


async def _release(session: AsyncSession, w: Withdrawal, why: str) -> None:
    await ledger.post(
        session,
        kind="WITHDRAWAL_RELEASE",
        reference=f"withdrawal:{w.id}:release",
        currency=w.currency,
        legs=[(ledger.Platform(AccountKind.WITHDRAWALS_PENDING), -w.amount), (ledger.UserAccount(w.user_id), w.amount)],
        details={"withdrawalId": str(w.id), "why": why},
    )


async def payout_completed(
    session: AsyncSession, op: ChainOperation, *, confirmed: bool, reason: str = ""
) -> Withdrawal | None:
    """The payout of an APPROVED withdrawal completed (see the module docstring); a finished one does not change.
    Returns the withdrawal when it changed."""
    w = await _locked(session, uuid.UUID(op.business_ref.removeprefix("withdrawal:")))
    if w.state is not W.APPROVED:
        return None
    w.tx_hash, w.block_number, w.updated_at = op.mined_tx_hash or op.tx_hash, op.mined_block, utcnow()
    if confirmed:
        w.state = W.COMPLETED
        await ledger.post(
            session,
            kind="WITHDRAWAL",
            reference=f"withdrawal:{w.id}:paid",
            currency=w.currency,
            legs=[
                (ledger.Platform(AccountKind.WITHDRAWALS_PENDING), -w.amount),
                (ledger.Platform(AccountKind.WITHDRAWALS), w.amount),
            ],
            details={"withdrawalId": str(w.id), "txHash": w.tx_hash},
        )
    else:
        w.state, w.reason = W.FAILED, " ".join(reason.split())[:MAX_REASON] or "PAYOUT_FAILED"
        await _release(session, w, "payout failed")
    record(
        session,
        actor_id=None,
        action=f"withdrawal.{w.state.value.lower()}",
        target_type="withdrawal",
        target_id=w.id,
        details={"operation": str(op.id), "txHash": w.tx_hash, **({} if confirmed else {"reason": w.reason})},
    )
    await session.flush()
    return w


def event_of(w: Withdrawal) -> dict:
    return {
        "id": str(w.id),
        "state": w.state.value,
        "amount": str(w.amount),
        "currency": w.currency,
        "chainId": w.chain_id,
        "toAddress": w.to_address,
        "txHash": w.tx_hash,
        "blockNumber": w.block_number,
        "reason": w.reason,
    }
