"""Withdrawals: an investor's cash paid out in stablecoin to one of its linked, verified wallets.

PENDING_APPROVAL (above the approval threshold) -> APPROVED | REJECTED; APPROVED -> COMPLETED | FAILED. Below the
threshold a request starts APPROVED. At request the cash moves from the user's AVAILABLE to the platform account
WITHDRAWALS_PENDING (reserved); APPROVED enqueues the payout operation ("payout.withdrawal", business_ref
"withdrawal:<id>", Stablecoin.transfer from the treasury signer); COMPLETED (the Transfer indexed and final) moves it
to WITHDRAWALS (paid out, final); FAILED or REJECTED gives it back to AVAILABLE.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Hash32, Money, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class WithdrawalState(str, enum.Enum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


class Withdrawal(Base):
    __tablename__ = "withdrawals"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    currency: Mapped[str] = mapped_column(String(16), nullable=False)  # ledger currency = the stablecoin symbol
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    to_address: Mapped[str] = mapped_column(Address, nullable=False)
    amount_units: Mapped[int] = mapped_column(TokenUnits, nullable=False)
    state: Mapped[WithdrawalState] = mapped_column(pg_enum(WithdrawalState, "withdrawal_state"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(120), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)  # rejection or failure reason
    decided_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tx_hash: Mapped[str | None] = mapped_column(Hash32)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index("uq_withdrawals_user_idempotency_key", "user_id", "idempotency_key", unique=True),
        Index("ix_withdrawals_user_created", "user_id", "created_at", "id"),
        Index("ix_withdrawals_state_created", "state", "created_at", "id"),
    )
