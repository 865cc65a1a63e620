"""Tokens and the state the indexer derives from their events: holdings, transfers, identity-registry entries.

Amounts are raw integer token units (Numeric(78, 0)); divide by 10**decimals for display.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Hash32, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class TokenKind(str, enum.Enum):
    SECURITY = "SECURITY"  # ERC-3643-style security token of an asset
    STABLECOIN = "STABLECOIN"  # quote/payment currency


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    address: Mapped[str] = mapped_column(Address, nullable=False)  # checksummed
    kind: Mapped[TokenKind] = mapped_column(pg_enum(TokenKind, "token_kind"), nullable=False)
    asset_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("assets.id"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    symbol: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    decimals: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    total_supply: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    identity_registry: Mapped[str | None] = mapped_column(Address)
    start_block: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)  # deployment block
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("uq_tokens_chain_address", "chain_id", "address", unique=True),)


class Holding(Base):
    __tablename__ = "holdings"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_address: Mapped[str] = mapped_column(Address, primary_key=True)
    holder: Mapped[str] = mapped_column(Address, primary_key=True)
    balance: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)
    frozen_amount: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)
    frozen: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_block: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_holdings_token_balance", "chain_id", "token_address", "balance"),)


class TokenTransfer(Base):
    __tablename__ = "token_transfers"

    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    block_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    log_index: Mapped[int] = mapped_column(Integer, nullable=False)
    block_number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    block_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tx_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    token_address: Mapped[str] = mapped_column(Address, nullable=False)
    from_address: Mapped[str] = mapped_column(Address, nullable=False)
    to_address: Mapped[str] = mapped_column(Address, nullable=False)
    value: Mapped[int] = mapped_column(TokenUnits, nullable=False)

    __table_args__ = (
        # as chain_events' (models/chain.py): in block order, reorg rollbacks by (chain_id, block_number)
        PrimaryKeyConstraint("chain_id", "block_number", "log_index", "block_hash", name="pk_token_transfers"),
        Index("ix_token_transfers_token_block", "chain_id", "token_address", "block_number", "log_index"),
        Index("ix_token_transfers_from", "chain_id", "token_address", "from_address", "block_number"),
        Index("ix_token_transfers_to", "chain_id", "token_address", "to_address", "block_number"),
        # a trade's chain leg by its transaction (resolvers/trading/settlement._CHAIN_LEGS; migration 0026)
        Index("ix_token_transfers_tx_hash", "chain_id", "tx_hash", "block_number"),
    )


class IdentityEntry(Base):
    """One investor address in an identity registry (ERC-3643 IdentityRegistered/Removed/CountryUpdated)."""

    __tablename__ = "identities"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    registry_address: Mapped[str] = mapped_column(Address, primary_key=True)
    investor: Mapped[str] = mapped_column(Address, primary_key=True)
    identity: Mapped[str | None] = mapped_column(Address)
    country: Mapped[int | None] = mapped_column(SmallInteger)
    # Where `country` comes from: EVENT (CountryUpdated, or read at the registration's block), LATEST (the
    # node had no state that old: read at a recent block) or UNKNOWN (could not be read; country is NULL).
    country_source: Mapped[str] = mapped_column(String(8), nullable=False, server_default=text("'EVENT'"))
    registered: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_block: Mapped[int] = mapped_column(BigInteger, nullable=False)
