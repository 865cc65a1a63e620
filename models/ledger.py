"""Double-entry cash ledger.

Every movement is one `LedgerTransaction` with entries that sum to zero per currency (a deferred constraint
trigger checks it at commit), so the sum over all accounts is zero at all times. `LedgerAccount.balance` is the
running sum of its entries, updated in the same transaction, for cheap reads. Amounts are Decimal.

Accounts per user and currency: AVAILABLE (free cash) and RESERVED (held by open buy orders). Platform
accounts (no owner): DEPOSITS (the outside world money comes from), FEES (trading fees earned),
WITHDRAWALS (money paid out), REFUNDS_PAYABLE, RECEIVABLES (owed to the platform).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Money, created_at, uuid_pk
from models.identity import pg_enum


class AccountKind(str, enum.Enum):
    AVAILABLE = "AVAILABLE"
    RESERVED = "RESERVED"
    DEPOSITS = "DEPOSITS"
    FEES = "FEES"
    WITHDRAWALS = "WITHDRAWALS"
    REFUNDS_PAYABLE = "REFUNDS_PAYABLE"
    RECEIVABLES = "RECEIVABLES"  # owed to the platform: a failed trade's seller who no longer had the cash
    WITHDRAWALS_PENDING = "WITHDRAWALS_PENDING"  # withdrawals requested, not yet paid out on chain (migration 0011)


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    kind: Mapped[AccountKind] = mapped_column(pg_enum(AccountKind, "ledger_account_kind"), nullable=False)
    currency: Mapped[str] = mapped_column(String(16), nullable=False)
    balance: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        # users can never hold negative cash, whatever the concurrency (platform accounts may: DEPOSITS is the
        # mirror of all money that came in)
        CheckConstraint("owner_id IS NULL OR balance >= 0", name="user_balance_not_negative"),
        Index(
            "uq_ledger_accounts_owner_kind_currency",
            "owner_id",
            "kind",
            "currency",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # CREDIT, RESERVE, RELEASE, SETTLE, REFUND...
    # Idempotency: one transaction per business reference (e.g. "payment:<id>:credit"); a retry is a no-op.
    reference: Mapped[str] = mapped_column(String(120), nullable=False, unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_at()


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # references ledger_transactions.id / ledger_accounts.id, checked by triggers rather than foreign keys (one
    # set-wise check per INSERT statement instead of a query and a row lock per entry; deletes and re-keying of
    # referenced rows refused): migration 0025
    transaction_id: Mapped[uuid.UUID] = mapped_column(nullable=False, index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    currency: Mapped[str] = mapped_column(String(16), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)  # positive = into the account
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_ledger_entries_account_id", "account_id", "id"),)
