"""Cap table checkpoints (resolvers/reports/checkpoints.py): a security token's balances at a finalized block.

A checkpoint row exists once its balances are all written (same transaction); rows are never updated: blocks at or
below the finalized block cannot change (a deeper reorg stops the indexer).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, TokenUnits, created_at


class CapTableCheckpoint(Base):
    __tablename__ = "cap_table_checkpoints"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_address: Mapped[str] = mapped_column(Address, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holders: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = created_at()


class CapTableCheckpointBalance(Base):
    __tablename__ = "cap_table_checkpoint_balances"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_address: Mapped[str] = mapped_column(Address, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holder: Mapped[str] = mapped_column(Address, primary_key=True)
    balance: Mapped[int] = mapped_column(TokenUnits, nullable=False)
