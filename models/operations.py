"""On-chain operations: the agent's durable outbox (one row per business decision that must reach a chain).

A domain decision (settlement instruction, refund, withdrawal, identity change, compliance action...) inserts one
row in its own transaction (`agent.outbox.enqueue`); `business_ref` is unique, so a decision retried or replayed
still yields one operation. The executor (agent/) drives the row through its states:

    PENDING -> SIGNED -> BROADCAST -> MINED -> CONFIRMED
       |          |          |          |---> FAILED (receipt status 0 at finality, decoded revert reason)
       |          |          |<---------'     (reorg removed the tx before finality: re-broadcast the stored raw tx)
       |          |          '-> PENDING      (its nonce was consumed on chain by a transaction not ours: re-sign)
       |          '-> REPLACED -> CANCELED    (an operator's cancel of a SIGNED or BROADCAST op: the agent fills its
       |                   '-> MINED           nonce with a 0-value self-transfer; CANCELED once that nonce is final
       |                                       with none of the op's hashes mined, else the op's own tx won)
       |-> FAILED (reverted at gas estimation, nothing sent) | CANCELED
       '-> BATCHED -> CONFIRMED               (a member of a batch operation, `batch_id`: agent/batches.py)
              '-> PENDING                     (the batch reverted: sent alone, never batched again)

`raw_tx` and `nonce` are committed BEFORE the broadcast: a crash at any point re-broadcasts the same signed
transaction (same nonce, so it can only land once). Every hash ever broadcast for the op (fee-bump replacements
included) is kept in `tx_hashes`; the op is confirmed by whichever lands. CONFIRMED is set only from the indexed
event (chain_events, matched by tx hash) at or below the indexer's finalized block, never from a receipt alone.
A fee bump keeps the op BROADCAST with the new hash appended; REPLACED is only an operator's cancel under way
(agent/cancels.py): the op keeps its nonce, nothing is compensated until the cancel tx is final.

Numbers: args are JSON with integers as decimal strings (uint256 does not fit a JSON number); fees, gas and
`value` (wei, for plain value transfers such as gas top-ups) are integers stored as Numeric(78, 0).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Address, Base, Hash32, TokenUnits, created_at, updated_at, uuid_pk
from models.identity import pg_enum


class OperationState(str, enum.Enum):
    PENDING = "PENDING"
    SIGNED = "SIGNED"
    BROADCAST = "BROADCAST"
    MINED = "MINED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    REPLACED = "REPLACED"
    CANCELED = "CANCELED"
    BATCHED = "BATCHED"  # carried by the batch operation `batch_id` (one transaction for many operations)


# States in which the operation still owns its nonce / still needs the executor.
IN_FLIGHT_STATES = (OperationState.SIGNED, OperationState.BROADCAST, OperationState.MINED)
OPEN_STATES = (OperationState.PENDING, OperationState.BATCHED, *IN_FLIGHT_STATES)
FINAL_STATES = (OperationState.CONFIRMED, OperationState.FAILED, OperationState.CANCELED)
# States in which the op holds a nonce of its sender (REPLACED: until its cancel tx or its own tx fills it): only a
# signer with that sender's key can advance it.
NONCE_STATES = (*IN_FLIGHT_STATES, OperationState.REPLACED)
# States in which the op's own transaction may still land: its business decision is still under way (an operator's
# cancel, REPLACED, included: the original may win against the cancel tx). As strings, for raw SQL parameters.
UNDER_WAY_STATE_NAMES = ("PENDING", "SIGNED", "BROADCAST", "MINED", "REPLACED")


class ChainOperation(Base):
    __tablename__ = "chain_operations"

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    chain_id: Mapped[int] = mapped_column(Integer, nullable=False)
    contract: Mapped[str] = mapped_column(Address, nullable=False)  # checksummed `to` of the transaction
    abi_name: Mapped[str] = mapped_column(String(40), nullable=False)  # artifact name; "" for a value transfer
    function: Mapped[str] = mapped_column(String(80), nullable=False)  # ABI function name; "" for a value transfer
    args: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, default=list)
    value: Mapped[int] = mapped_column(TokenUnits, nullable=False, default=0)  # wei sent with the call
    signer: Mapped[str] = mapped_column(String(20), nullable=False, default="agent")  # key role
    business_ref: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    state: Mapped[OperationState] = mapped_column(
        pg_enum(OperationState, "operation_state"), nullable=False, default=OperationState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sender: Mapped[str | None] = mapped_column(Address)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    raw_tx: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(Hash32)  # the latest signed hash
    tx_hashes: Mapped[list[str]] = mapped_column(ARRAY(String(66, collation="C")), nullable=False, default=list)
    max_fee_per_gas: Mapped[int | None] = mapped_column(TokenUnits)
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(TokenUnits)
    gas_price: Mapped[int | None] = mapped_column(TokenUnits)
    gas_limit: Mapped[int | None] = mapped_column(TokenUnits)
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    mined_block_hash: Mapped[str | None] = mapped_column(Hash32)
    mined_tx_hash: Mapped[str | None] = mapped_column(Hash32)  # which of tx_hashes landed
    mined_status: Mapped[int | None] = mapped_column(SmallInteger)  # receipt status (1 ok, 0 reverted)
    gas_used: Mapped[int | None] = mapped_column(TokenUnits)
    confirmed_block: Mapped[int | None] = mapped_column(BigInteger)
    revert_reason: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # actor of the decision
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    broadcast_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the batch operation that carries (or carried, if it reverted) this one's call; NULL for a batch or a single
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("chain_operations.id"))

    __table_args__ = (
        Index("ix_chain_operations_state_chain", "state", "chain_id", "created_at"),
        Index("ix_chain_operations_kind_created", "kind", "created_at"),
        Index("ix_chain_operations_batch_id", "batch_id", postgresql_where=text("batch_id IS NOT NULL")),
        # operations with a hash that are not final: the trading gate checks whether their transfer is indexed
        # (resolvers/trading/gate.py, migration 0023)
        Index(
            "ix_chain_operations_unfinished_hashes",
            "chain_id",
            postgresql_where=text("tx_hashes <> '{}' AND state NOT IN ('CONFIRMED', 'FAILED', 'CANCELED')"),
        ),
        # prefix lookups of versioned refs ("identity:<chain>:<registry>:<wallet>:<n>"; migration 0011)
        Index(
            "ix_chain_operations_business_ref_prefix",
            "business_ref",
            postgresql_ops={"business_ref": "varchar_pattern_ops"},
        ),
        # One live operation per (chain, sender, nonce): a second writer could never sign over a held nonce.
        Index(
            "uq_chain_operations_sender_nonce",
            "chain_id",
            "sender",
            "nonce",
            unique=True,
            postgresql_where=text("nonce IS NOT NULL AND state <> 'CANCELED'"),
        ),
    )
