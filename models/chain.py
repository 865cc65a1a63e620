"""Chain state written by the indexer: blocks, raw events, per-chain cursors and fetched intervals.

Every row starts its key with chain_id. Raw events are unique per (chain_id, block_number, log_index, block_hash),
so replaying a range is an idempotent upsert, and two blocks at one height (a reorg) keep apart; the key leads with
the block number so that an indexer appends to it in key order (migration 0024).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, PrimaryKeyConstraint, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Hash32, created_at, updated_at


class Block(Base):
    __tablename__ = "blocks"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    parent_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("uq_blocks_chain_hash", "chain_id", "hash", unique=True),
        # a date -> the last block at or before it (cap tables at a date, resolvers/reports/cap_table.py)
        Index("ix_blocks_chain_timestamp", "chain_id", "timestamp", "number"),
    )


class ChainEvent(Base):
    __tablename__ = "chain_events"

    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    block_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    log_index: Mapped[int] = mapped_column(Integer, nullable=False)
    block_number: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tx_hash: Mapped[str] = mapped_column(Hash32, nullable=False)
    tx_index: Mapped[int] = mapped_column(Integer, nullable=False)
    address: Mapped[str] = mapped_column(Address, nullable=False)  # checksummed emitter
    event: Mapped[str] = mapped_column(String(40), nullable=False)  # decoded name, or "Unknown"
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(66)), nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    args: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)  # ints as strings
    # The account whose state the event sets (holder/investor; the token for Paused/Unpaused; NULL for
    # Transfer): derived freeze/pause/identity state is recomputed from the latest such events.
    subject: Mapped[str | None] = mapped_column(Address)

    __table_args__ = (
        # (chain_id, block_number) first: reorg rollbacks and block-range reads use it; block_hash last keeps the logs
        # of two blocks at one height apart
        PrimaryKeyConstraint("chain_id", "block_number", "log_index", "block_hash", name="pk_chain_events"),
        Index("ix_chain_events_chain_address_block", "chain_id", "address", "block_number"),
        # Partial: Transfers (the bulk) have no subject, so this index costs them nothing.
        Index(
            "ix_chain_events_subject",
            "chain_id",
            "address",
            "subject",
            "block_number",
            "log_index",
            postgresql_where=text("subject IS NOT NULL"),
        ),
    )


class IndexerCursor(Base):
    """Where the indexer is on one chain. Moves in the same transaction as the rows it covers."""

    __tablename__ = "indexer_cursors"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    indexed_block: Mapped[int] = mapped_column(BigInteger, nullable=False, default=-1)
    indexed_hash: Mapped[str | None] = mapped_column(Hash32)
    safe_block: Mapped[int | None] = mapped_column(BigInteger)
    finalized_block: Mapped[int | None] = mapped_column(BigInteger)
    head_block: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = updated_at()
    # Health, written by the running indexer (indexer/health.py) and cleared by its next good step:
    # why the chain stopped (ReorgTooDeep), and the run of step failures it is retrying through.
    stopped_reason: Mapped[str | None] = mapped_column(Text)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"), default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FetchedInterval(Base):
    """Block ranges already indexed for one contract, so backfills resume and never refetch."""

    __tablename__ = "fetched_intervals"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(Address, primary_key=True)
    from_block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    to_block: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BackfillRequest(Base):
    """`rwa index backfill` next to a running indexer: a range the chain's writer executes for the operator,
    with its progress (indexer/backfill_requests.py). State: PENDING -> RUNNING -> DONE | FAILED | CANCELLED."""

    __tablename__ = "indexer_backfill_requests"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_address: Mapped[str | None] = mapped_column(Address)  # None: every watched contract
    from_block: Mapped[int] = mapped_column(BigInteger, nullable=False)
    to_block: Mapped[int | None] = mapped_column(BigInteger)  # None: the finalized head when it starts
    state: Mapped[str] = mapped_column(String(12), nullable=False, server_default=text("'PENDING'"))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    blocks_total: Mapped[int | None] = mapped_column(BigInteger)
    blocks_done: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    events: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (Index("ix_indexer_backfill_requests_chain_state", "chain_id", "state", "id"),)
