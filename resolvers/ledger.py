"""The double-entry cash ledger (models/ledger.py): the only code that moves cash.

    await post(session, kind="CREDIT", reference=f"payment:{pid}:credit", currency="USD",
               legs=[(Platform(AccountKind.DEPOSITS), -amount), (UserAccount(uid, AccountKind.AVAILABLE), amount)])

`post` is idempotent per `reference` (returns False when it was already posted), locks the touched accounts in
id order (no deadlocks between concurrent movements), refuses to take a user account below zero (Conflict,
reason INSUFFICIENT_FUNDS; the database's CHECK constraint backs this up) and writes all entries in one
INSERT, which a trigger checks balances to zero.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Conflict
from models.ledger import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction

USER_KINDS = (AccountKind.AVAILABLE, AccountKind.RESERVED)


@dataclass(frozen=True)
class UserAccount:
    user_id: uuid.UUID
    kind: AccountKind = AccountKind.AVAILABLE


@dataclass(frozen=True)
class Platform:
    kind: AccountKind


AccountRef = UserAccount | Platform


@dataclass(frozen=True)
class Balance:
    currency: str
    available: Decimal
    reserved: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved


async def account_id(session: AsyncSession, ref: AccountRef, currency: str) -> uuid.UUID:
    owner = ref.user_id if isinstance(ref, UserAccount) else None
    await session.execute(insert(LedgerAccount).values(id=uuid.uuid4(), owner_id=owner, kind=ref.kind,
                                                       currency=currency, balance=Decimal(0))
                          .on_conflict_do_nothing())
    return (await session.execute(select(LedgerAccount.id).where(
        LedgerAccount.owner_id.is_(None) if owner is None else LedgerAccount.owner_id == owner,
        LedgerAccount.kind == ref.kind, LedgerAccount.currency == currency))).scalar_one()


async def post(session: AsyncSession, *, kind: str, reference: str, currency: str,
               legs: list[tuple[AccountRef, Decimal]], details: dict[str, Any] | None = None) -> bool:
    """Record one balanced movement. Returns False (and changes nothing) if `reference` was already posted."""
    if sum((amount for _, amount in legs), Decimal(0)) != 0:
        raise ValueError(f"ledger movement {reference} does not balance")
    if any(not amount.is_finite() for _, amount in legs):
        raise BadUserInput("amount must be a finite number")
    txn_id = (await session.execute(
        insert(LedgerTransaction).values(id=uuid.uuid4(), kind=kind, reference=reference, details=details or {})
        .on_conflict_do_nothing(index_elements=["reference"]).returning(LedgerTransaction.id)
    )).scalar_one_or_none()
    if txn_id is None:
        return False
    ids = [await account_id(session, ref, currency) for ref, _ in legs]
    accounts = {a.id: a for a in (await session.execute(
        select(LedgerAccount).where(LedgerAccount.id.in_(ids)).order_by(LedgerAccount.id).with_for_update()
    )).scalars()}
    deltas: dict[uuid.UUID, Decimal] = {}
    for acc_id, (_, amount) in zip(ids, legs):
        deltas[acc_id] = deltas.get(acc_id, Decimal(0)) + amount
    for acc_id, delta in deltas.items():
        account = accounts[acc_id]
        if account.owner_id is not None and account.balance + delta < 0:
            raise Conflict(f"insufficient {account.kind.value.lower()} {currency} balance", reason="INSUFFICIENT_FUNDS")
    # one multi-row VALUES statement: the balance trigger checks each statement as a whole
    await session.execute(insert(LedgerEntry).values([
        {"transaction_id": txn_id, "account_id": acc_id, "currency": currency, "amount": amount}
        for acc_id, (_, amount) in zip(ids, legs)]))
    for acc_id, delta in deltas.items():
        await session.execute(update(LedgerAccount).where(LedgerAccount.id == acc_id)
                              .values(balance=LedgerAccount.balance + delta))
    return True


async def credit_deposit(session: AsyncSession, user_id: uuid.UUID, amount: Decimal, currency: str,
                         reference: str, details: dict[str, Any] | None = None) -> bool:
    """Money arrived from outside (a settled payment, an admin credit in dev)."""
    if amount <= 0:
        raise BadUserInput("amount must be positive", field="amount")
    return await post(session, kind="CREDIT", reference=reference, currency=currency, details=details,
                      legs=[(Platform(AccountKind.DEPOSITS), -amount), (UserAccount(user_id), amount)])


async def reserve(session: AsyncSession, user_id: uuid.UUID, amount: Decimal, currency: str, reference: str) -> bool:
    """Hold free cash for an open buy order (AVAILABLE -> RESERVED)."""
    return await post(session, kind="RESERVE", reference=reference, currency=currency,
                      legs=[(UserAccount(user_id), -amount), (UserAccount(user_id, AccountKind.RESERVED), amount)])


async def release(session: AsyncSession, user_id: uuid.UUID, amount: Decimal, currency: str, reference: str) -> bool:
    """Give held cash back (RESERVED -> AVAILABLE), e.g. when an order is canceled."""
    return await post(session, kind="RELEASE", reference=reference, currency=currency,
                      legs=[(UserAccount(user_id, AccountKind.RESERVED), -amount), (UserAccount(user_id), amount)])


async def balances(session: AsyncSession, user_id: uuid.UUID) -> list[Balance]:
    rows = (await session.execute(select(LedgerAccount.currency, LedgerAccount.kind, LedgerAccount.balance)
                                  .where(LedgerAccount.owner_id == user_id))).all()
    out: dict[str, dict[AccountKind, Decimal]] = {}
    for currency, kind, balance in rows:
        out.setdefault(currency, {})[kind] = balance
    return [Balance(c, v.get(AccountKind.AVAILABLE, Decimal(0)), v.get(AccountKind.RESERVED, Decimal(0)))
            for c, v in sorted(out.items())]


async def total_by_currency(session: AsyncSession) -> dict[str, Decimal]:
    """Sum over every account per currency: zero at all times (the invariant tests assert)."""
    from sqlalchemy import func

    rows = (await session.execute(select(LedgerAccount.currency, func.sum(LedgerAccount.balance))
                                  .group_by(LedgerAccount.currency))).all()
    return {c: Decimal(t) for c, t in rows}
