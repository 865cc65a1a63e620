"""Primary issuance: offerings, investors' subscriptions to them, and direct issuance/redemption of tokens.

An offering sells new tokens of an ACTIVE security token at a fixed price in a quote currency:
DRAFT -> OPEN -> CLOSED -> ALLOCATED -> SETTLED, or CANCELED before allocation. A subscription reserves the
investor's cash at once (ledger AVAILABLE -> RESERVED); at allocation its whole lots are fixed (the rest released)
and minted to its wallet by the agent in batched `batchMint` operations (chain_operations); the cash moves to the
issuer only when the mint is indexed and final (SETTLED), and a failed mint releases it (FAILED).

Direct issuance (`token_issuances`, kind ISSUE) mints to named investors without an offering, with COMPLIANCE
approval above a threshold; kind REDEEM burns an investor's tokens (an asset's REDEEMING -> RETIRED path).
Quantities are Decimal whole tokens (lots of `lot_size`) and raw integer token units on chain; cash is Decimal.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Identity, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Money, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class OfferingState(str, enum.Enum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    ALLOCATED = "ALLOCATED"
    SETTLED = "SETTLED"
    CANCELED = "CANCELED"


class AllocationRule(str, enum.Enum):
    FIRST_COME = "FIRST_COME"
    PRO_RATA = "PRO_RATA"


class SubscriptionState(str, enum.Enum):
    ACTIVE = "ACTIVE"  # cash reserved, waiting for the close
    REJECTED = "REJECTED"  # refused at subscription (reason); nothing reserved
    CANCELED = "CANCELED"  # canceled by the investor (or the offering was); cash released
    UNALLOCATED = "UNALLOCATED"  # got no whole lot at allocation; cash released
    ALLOCATED = "ALLOCATED"  # lots fixed, mint on its way; allocated cash still reserved
    SETTLED = "SETTLED"  # mint indexed and final; cash paid to the issuer
    FAILED = "FAILED"  # mint failed; cash released


class SubscriptionReason(str, enum.Enum):
    """Why a subscription is REJECTED, CANCELED, UNALLOCATED or FAILED (offering_subscriptions.reason holds the value;
    a FAILED mint stores the chain's failure text instead, reported as MINT_FAILED)."""

    # REJECTED at subscription (resolvers/issuance/subscriptions.py decide(), in this order)
    OFFERING_NOT_OPEN = "OFFERING_NOT_OPEN"
    OFFERING_NOT_STARTED = "OFFERING_NOT_STARTED"
    OFFERING_CLOSED = "OFFERING_CLOSED"
    KYC_NOT_APPROVED = "KYC_NOT_APPROVED"
    COUNTRY_NOT_ELIGIBLE = "COUNTRY_NOT_ELIGIBLE"
    NOT_ACCREDITED = "NOT_ACCREDITED"
    NO_VERIFIED_WALLET = "NO_VERIFIED_WALLET"
    MAX_TICKET_EXCEEDED = "MAX_TICKET_EXCEEDED"
    CAP_REACHED = "CAP_REACHED"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    # REJECTED at close: the wallet is no longer listed by the identity registry, or frozen
    WALLET_NOT_VERIFIED = "WALLET_NOT_VERIFIED"
    # CANCELED
    USER_CANCELED = "USER_CANCELED"
    ISSUER_CANCELED = "ISSUER_CANCELED"
    TARGET_NOT_REACHED = "TARGET_NOT_REACHED"
    # UNALLOCATED
    NOT_ALLOCATED = "NOT_ALLOCATED"
    # FAILED
    MINT_FAILED = "MINT_FAILED"


class IssuanceKind(str, enum.Enum):
    ISSUE = "ISSUE"
    REDEEM = "REDEEM"


class IssuanceState(str, enum.Enum):
    PENDING_APPROVAL = "PENDING_APPROVAL"  # above the threshold: COMPLIANCE approves or rejects
    SUBMITTED = "SUBMITTED"  # operations enqueued for the agent
    SETTLED = "SETTLED"  # every operation confirmed
    FAILED = "FAILED"  # an operation failed
    REJECTED = "REJECTED"  # COMPLIANCE refused


class Offering(Base):
    __tablename__ = "offerings"

    id: Mapped[uuid.UUID] = uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False, unique=True)
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tokens.id"), nullable=False, index=True)
    asset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("assets.id"), nullable=False, index=True)
    issuer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    quote_currency: Mapped[str] = mapped_column(String(16), nullable=False)
    price: Mapped[Decimal] = mapped_column(Money, nullable=False)  # per whole token
    lot_size: Mapped[Decimal] = mapped_column(Money, nullable=False)  # whole tokens per lot
    min_ticket: Mapped[Decimal] = mapped_column(Money, nullable=False)
    max_ticket: Mapped[Decimal | None] = mapped_column(Money)  # per investor, all their subscriptions
    target: Mapped[Decimal] = mapped_column(Money, nullable=False)
    hard_cap: Mapped[Decimal] = mapped_column(Money, nullable=False)
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    eligible_countries: Mapped[list[str] | None] = mapped_column(ARRAY(String(2)))  # NULL: any country
    accredited_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    allocation_rule: Mapped[AllocationRule] = mapped_column(pg_enum(AllocationRule, "allocation_rule"), nullable=False)
    fee_bps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # platform fee on the raised cash
    state: Mapped[OfferingState] = mapped_column(
        pg_enum(OfferingState, "offering_state"), nullable=False, default=OfferingState.DRAFT
    )
    subscribed_total: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    allocated_total: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    subscription_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("ix_offerings_state_closes", "state", "closes_at"),)


class OfferingSubscription(Base):
    __tablename__ = "offering_subscriptions"

    id: Mapped[uuid.UUID] = uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False, unique=True)  # time priority
    offering_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offerings.id"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    client_key: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)  # cash asked (and reserved when ACTIVE)
    wallet_address: Mapped[str | None] = mapped_column(Address)
    state: Mapped[SubscriptionState] = mapped_column(pg_enum(SubscriptionState, "subscription_state"), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(40))
    allocated_quantity: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))  # whole tokens
    allocated_units: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)
    allocated_cash: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    mint_ref: Mapped[str | None] = mapped_column(String(200))  # business_ref of its mint operation
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index("ix_offering_subscriptions_offering", "offering_id", "state", "seq"),
        Index("ix_offering_subscriptions_mint_ref", "mint_ref", postgresql_where=text("mint_ref IS NOT NULL")),
        Index(
            "uq_offering_subscriptions_client_key",
            "offering_id",
            "user_id",
            "client_key",
            unique=True,
            postgresql_where=text("client_key IS NOT NULL"),
        ),
    )


class TokenIssuance(Base):
    """A direct issuance (mint to named investors) or a redemption (burn), each line one investor."""

    __tablename__ = "token_issuances"

    id: Mapped[uuid.UUID] = uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), nullable=False, unique=True)
    kind: Mapped[IssuanceKind] = mapped_column(pg_enum(IssuanceKind, "issuance_kind"), nullable=False)
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tokens.id"), nullable=False, index=True)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    state: Mapped[IssuanceState] = mapped_column(pg_enum(IssuanceState, "issuance_state"), nullable=False)
    total_quantity: Mapped[Decimal] = mapped_column(Money, nullable=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    client_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        Index(
            "uq_token_issuances_client_key",
            "requested_by",
            "client_key",
            unique=True,
            postgresql_where=text("client_key IS NOT NULL"),
        ),
    )


class TokenIssuanceLine(Base):
    __tablename__ = "token_issuance_lines"

    issuance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("token_issuances.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    wallet_address: Mapped[str] = mapped_column(Address, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Money, nullable=False)
    units: Mapped[int] = mapped_column(TokenUnits, nullable=False)
    op_ref: Mapped[str] = mapped_column(String(200), nullable=False, index=True)  # its operation's business_ref
