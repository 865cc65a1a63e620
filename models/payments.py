"""Payments: intents to fund a cash account, their on-chain matches, refunds and webhook notifications.

A STABLECOIN payment has its own deposit address (HD derivation index from `payment_deposit_index_seq`); the
reconciler matches indexed `token_transfers` to it (`payment_matches`). A BANK_TRANSFER payment has a
reference code the payer quotes; an ADMIN confirms it. Amounts: `amount` is Decimal in the currency's units;
`*_units` are raw integer token units (STABLECOIN only). The ledger is credited only at CONFIRMED/OVERPAID, once,
under the ledger reference "payment:<id>:credit".
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, Sequence, SmallInteger, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Hash32, Money, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum

DEPOSIT_INDEX_SEQ = Sequence("payment_deposit_index_seq", metadata=Base.metadata)


class PaymentMethod(str, enum.Enum):
    STABLECOIN = "STABLECOIN"
    BANK_TRANSFER = "BANK_TRANSFER"


class PaymentState(str, enum.Enum):
    AWAITING_FUNDS = "AWAITING_FUNDS"
    DETECTED = "DETECTED"
    UNDERPAID = "UNDERPAID"
    CONFIRMED = "CONFIRMED"
    OVERPAID = "OVERPAID"
    LATE = "LATE"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    FAILED = "FAILED"


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    method: Mapped[PaymentMethod] = mapped_column(pg_enum(PaymentMethod, "payment_method"), nullable=False)
    state: Mapped[PaymentState] = mapped_column(pg_enum(PaymentState, "payment_state"), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)  # intended, in `currency`
    currency: Mapped[str] = mapped_column(String(16), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(120), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # STABLECOIN
    chain_id: Mapped[int | None] = mapped_column(Integer)
    token_address: Mapped[str | None] = mapped_column(Address)
    decimals: Mapped[int | None] = mapped_column(SmallInteger)
    deposit_address: Mapped[str | None] = mapped_column(Address)
    derivation_index: Mapped[int | None] = mapped_column(BigInteger)
    amount_units: Mapped[int | None] = mapped_column(TokenUnits)
    received_units: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)  # seen, final or not
    final_units: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)  # in finalized blocks
    # BANK_TRANSFER: the code the payer quotes, and the bank's own reference recorded by the confirming ADMIN
    reference_code: Mapped[str | None] = mapped_column(String(32))
    bank_reference: Mapped[str | None] = mapped_column(String(120))
    # money (in `currency`) once funds are final
    received_amount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    credited_amount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    refundable_amount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))  # excess/held
    refunded_amount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    detected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    final_block: Mapped[int | None] = mapped_column(BigInteger)  # highest block of the matched transfers
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index("uq_payments_user_idempotency_key", "user_id", "idempotency_key", unique=True),
        Index("uq_payments_deposit_address", "chain_id", "deposit_address", unique=True),
        Index("uq_payments_derivation_index", "derivation_index", unique=True),
        Index("uq_payments_reference_code", "reference_code", unique=True),
        Index("ix_payments_user_created", "user_id", "created_at", "id"),
        Index("ix_payments_created", "created_at", "id"),
        # the reconciler's and expiry job's working set: only payments still waiting for money
        Index(
            "ix_payments_open",
            "chain_id",
            "state",
            "expires_at",
            postgresql_where=text("state IN ('AWAITING_FUNDS', 'DETECTED', 'UNDERPAID', 'EXPIRED')"),
        ),
    )


class PaymentMatch(Base):
    """One on-chain transfer matched to a payment; deleted when a reorg removes the transfer."""

    __tablename__ = "payment_matches"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_hash: Mapped[str] = mapped_column(Hash32, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), nullable=False, index=True)
    block_number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tx_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    from_address: Mapped[str] = mapped_column(Address, nullable=False)
    value: Mapped[int] = mapped_column(TokenUnits, nullable=False)
    seen_at: Mapped[datetime] = created_at()


class PaymentTransition(Base):
    """State history: every transition, who or what caused it and why (the payment's own audit trail)."""

    __tablename__ = "payment_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), nullable=False)
    from_state: Mapped[str] = mapped_column(String(24), nullable=False)
    to_state: Mapped[str] = mapped_column(String(24), nullable=False)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # None: the reconciler or a job
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    at: Mapped[datetime] = created_at()

    __table_args__ = (Index("ix_payment_transitions_payment", "payment_id", "id"),)


class PaymentRefund(Base):
    __tablename__ = "payment_refunds"

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), nullable=False, index=True)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    actor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    created_at: Mapped[datetime] = created_at()
    # refundPayment's optional idempotencyKey (per payment) and the amount as it was asked for (null: all that was
    # left): a retry with the same key and amount returns this refund, another amount is IDEMPOTENCY_KEY_REUSED
    idempotency_key: Mapped[str | None] = mapped_column(String(120))
    requested_amount: Mapped[Decimal | None] = mapped_column(Money)

    __table_args__ = (
        Index("uq_payment_refunds_payment_idempotency_key", "payment_id", "idempotency_key", unique=True),
    )


class OutgoingTransfer(Base):
    """An instruction to send stablecoins out (a refund); the treasury signer executes it and records tx_hash."""

    __tablename__ = "outgoing_transfers"

    id: Mapped[uuid.UUID] = uuid_pk()
    refund_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_refunds.id"), nullable=False, unique=True)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    to_address: Mapped[str] = mapped_column(Address, nullable=False)
    amount_units: Mapped[int] = mapped_column(TokenUnits, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="PENDING")
    tx_hash: Mapped[str | None] = mapped_column(Hash32)
    created_at: Mapped[datetime] = created_at()


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = uuid_pk()
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_at: Mapped[datetime] = created_at()


class WebhookDelivery(Base):
    """One event for one endpoint. PENDING -> DELIVERED, or DEAD once every retry failed (a dead letter)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = uuid_pk()
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_deliveries_state_created", "state", "created_at", "id"),)
