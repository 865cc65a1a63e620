"""Batch operations: many PENDING operations of a batchable call carried by one transaction.

Each pass, before signing, the sender folds the PENDING operations that call a function with a batch form
(`BATCHABLE`: SecurityToken.settlementTransfer -> batchSettlementTransfer(senders, receivers, amounts)) and share
chain, contract, kind and signer role into batch operations of up to `RWA_AGENT_BATCH_MAX` members (balanced
chunks; a lone operation is sent alone). A batch is an ordinary operation (kind "batch.<member kind>", business_ref
"batch:<uuid>") that goes the whole way: estimate, sign, raw tx stored before broadcast, receipts, replacement,
reorg, confirmation at finality. Its members keep their own business_ref (one operation per decision) and wait in
BATCHED (`batch_id` = the batch); they are never signed on their own meanwhile and cannot be canceled. Each signature
of the batch is copied onto its members' tx hashes in the same transaction (the compliance gate and `myTrades` find
a member's transfer by them).

- The batch is CONFIRMED (its event indexed at or below the finalized block): every member whose own Transfer
  (from, to, value) the indexer stored in the batch's transaction (same block hash) becomes CONFIRMED with the
  batch's tx and block, and its kind's handler runs, set-based where the kind has one (trades SETTLED), all in the
  transaction that confirms the batch. A member without its indexed Transfer makes the completion raise: the batch
  stays MINED and is retried every iteration (confirmation comes from the index, never from the receipt).
- The batch FAILED (reverted at estimation: nothing was sent; reverted when mined, at finality: nothing moved) or
  was CANCELED before signing: its members go back to PENDING, keep `batch_id` (so they are never batched again)
  and are sent alone, so the one that breaks a rule fails with its own reason and the others still complete.
  A failed batch cannot be retried (its members already went alone).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent import handlers, metrics
from agent.context import SenderContext
from core.db import rowcount
from models.operations import ChainOperation, OperationState
from models.tokens import TokenTransfer

log = logging.getLogger("rwa.agent.batches")
S = OperationState
PREFIX = "batch."
MAX_KIND = 40


@dataclass(frozen=True)
class Batchable:
    abi_name: str
    function: str  # the single call, args (sender, receiver, amount)
    batch_function: str  # its batch form, args (senders[], receivers[], amounts[])
    max_members: int  # the contract's bound (SecurityToken.vy MAX_BATCH)


BATCHABLE = {
    ("SecurityToken", "settlementTransfer"): Batchable(
        "SecurityToken", "settlementTransfer", "batchSettlementTransfer", 500
    )
}


def is_batch(op: ChainOperation) -> bool:
    return op.kind.startswith(PREFIX)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """`items` in ceil(n / size) chunks of near-equal length (101 by 100 -> 51 + 50, not 100 + a lone 1)."""
    if not items:
        return []
    n = -(-len(items) // size)
    base, extra = divmod(len(items), n)
    out, at = [], 0
    for i in range(n):
        k = base + (1 if i < extra else 0)
        out.append(items[at : at + k])
        at += k
    return out


def columns(args: list[list[Any]]) -> list[list[Any]]:
    """Members' (sender, receiver, amount) -> the batch call's [senders], [receivers], [amounts]."""
    return [list(col) for col in zip(*args)]


@dataclass
class Folded:
    members: int  # operations folded into batches this pass
    lone: set[uuid.UUID]  # batchable operations seen alone in their group: sign_new sends them as they are

    def sendable(self) -> Any:
        """The filter sign_new adds: a batchable operation never in a batch is signed alone only if this pass saw it
        alone (one committed after the fold waits for the next pass, where it may join a batch)."""
        return ~foldable() | ChainOperation.id.in_(list(self.lone)) if self.lone else ~foldable()


def foldable() -> Any:
    """An operation that may join a batch (besides being PENDING and due): never in one, a batchable call with its
    three arguments, no value, a kind that leaves room for the prefix."""
    return (
        ChainOperation.batch_id.is_(None)
        & (ChainOperation.value == 0)
        & tuple_(ChainOperation.abi_name, ChainOperation.function).in_(list(BATCHABLE))
        & (func.jsonb_array_length(ChainOperation.args) == 3)
        & (func.length(ChainOperation.kind) <= MAX_KIND - len(PREFIX))
    )


async def fold(ctx: SenderContext) -> Folded:
    """Fold this sender's batchable PENDING operations into batch operations."""
    size = ctx.config.batch_max
    if size < 2:
        return Folded(0, set())
    limit = size * max(1, min(ctx.config.batch, 20))
    async with ctx.session() as s:
        async with s.begin():
            rows = (
                await s.execute(
                    select(
                        ChainOperation.id,
                        ChainOperation.kind,
                        ChainOperation.contract,
                        ChainOperation.abi_name,
                        ChainOperation.function,
                        ChainOperation.args,
                        ChainOperation.signer,
                    )
                    .where(
                        ChainOperation.chain_id == ctx.chain_id,
                        ChainOperation.signer.in_(ctx.roles),
                        ChainOperation.state == S.PENDING,
                        foldable(),
                        (ChainOperation.next_attempt_at.is_(None)) | (ChainOperation.next_attempt_at <= func.now()),
                    )
                    .order_by(ChainOperation.created_at, ChainOperation.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            groups: dict[tuple[str, str, str, str, str], list[Any]] = {}
            for r in rows:
                groups.setdefault((r.kind, r.contract, r.abi_name, r.function, r.signer), []).append(r)
            batches: list[dict[str, Any]] = []
            members: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
            lone: set[uuid.UUID] = set()
            for (kind, contract, abi_name, function, signer), group in groups.items():
                spec = BATCHABLE[(abi_name, function)]
                for chunk in chunks(group, min(size, spec.max_members)):
                    if len(chunk) < 2:
                        lone.update(r.id for r in chunk)
                        continue
                    bid = uuid.uuid4()
                    batches.append(
                        dict(
                            id=bid,
                            kind=PREFIX + kind,
                            chain_id=ctx.chain_id,
                            contract=contract,
                            abi_name=abi_name,
                            function=spec.batch_function,
                            args=columns([list(r.args) for r in chunk]),
                            value=0,
                            signer=signer,
                            business_ref=f"batch:{bid}",
                            state=S.PENDING,
                            attempts=0,
                            tx_hashes=[],
                        )
                    )
                    members.append((bid, [r.id for r in chunk]))
            if not batches:
                return Folded(0, lone)
            await s.execute(insert(ChainOperation), batches)
            table = ChainOperation.__table__
            for bid, ids in members:  # one statement per batch (an executemany per member cost ~1 ms each)
                await s.execute(update(table).where(table.c.id.in_(ids)).values(state=S.BATCHED.value, batch_id=bid))
    folded = sum(len(ids) for _, ids in members)
    metrics.TRANSITIONS.labels(str(ctx.chain_id), "BATCHED").inc(folded)
    return Folded(folded, lone)


async def follow_signatures(session: AsyncSession, ops: list[ChainOperation]) -> None:
    """In the transaction that stores a batch's (new) signature: its hash onto its members' tx_hashes."""
    pairs = [(op.id, op.tx_hash) for op in ops if is_batch(op) and op.tx_hash]
    if not pairs:
        return
    table = ChainOperation.__table__
    await session.execute(
        update(table)
        .where(table.c.batch_id == bindparam("b_id"), table.c.state == S.BATCHED.value)
        .values(tx_hash=bindparam("h"), tx_hashes=func.array_append(table.c.tx_hashes, bindparam("h"))),
        [{"b_id": i, "h": h} for i, h in pairs],
    )


@dataclass(slots=True)
class ConfirmedMember:
    """A member as its kind's handler sees it once confirmed (the ChainOperation attributes handlers read)."""

    id: uuid.UUID
    kind: str
    business_ref: str
    args: list[Any]
    tx_hash: str | None
    tx_hashes: list[str]
    created_at: datetime | None
    created_by: uuid.UUID | None
    chain_id: int
    contract: str
    batch_id: uuid.UUID
    state: OperationState
    confirmed_block: int | None
    confirmed_at: datetime | None
    last_error: str | None
    sender: str | None
    mined_block: int | None
    mined_block_hash: str | None
    mined_tx_hash: str | None
    mined_status: int | None
    mined_at: datetime | None
    gas_used: int | None


def _key(sender: str, receiver: str, amount: Any) -> tuple[str, str, int]:
    return sender.lower(), receiver.lower(), int(amount)


async def members_confirmed(session: AsyncSession, batch: ChainOperation) -> None:
    await members_confirmed_many(session, [batch])


async def members_confirmed_many(session: AsyncSession, confirmed: list[ChainOperation]) -> None:
    """Batches CONFIRMED: each member whose Transfer is indexed in its batch's tx, CONFIRMED with its handler.

    Set-based over every batch confirmed together (an ORM load and flush per member, or statements per batch, made
    this the slowest step): the members locked and read, the batches' indexed Transfers read, every member matched
    to one Transfer of its own batch, one UPDATE (executemany, per batch), then the kinds' handlers on all members.
    A member without its Transfer raises: nothing of the call is kept, and the batches are redone one by one."""
    by_id = {b.id: b for b in confirmed}
    table = ChainOperation.__table__
    rows = (
        await session.execute(
            select(
                table.c.id,
                table.c.kind,
                table.c.business_ref,
                table.c.args,
                table.c.tx_hash,
                table.c.tx_hashes,
                table.c.created_at,
                table.c.created_by,
                table.c.chain_id,
                table.c.contract,
                table.c.batch_id,
            )
            .where(table.c.batch_id.in_(list(by_id)), table.c.state == S.BATCHED.value)
            .order_by(table.c.batch_id, table.c.id)
            .with_for_update()
        )
    ).all()
    if not rows:
        return
    transfers = (
        await session.execute(
            select(
                TokenTransfer.block_hash,
                TokenTransfer.tx_hash,
                TokenTransfer.token_address,
                TokenTransfer.from_address,
                TokenTransfer.to_address,
                TokenTransfer.value,
            ).where(
                TokenTransfer.chain_id.in_(list({b.chain_id for b in confirmed})),
                # the key's (chain_id, block_number) prefix finds them (migration 0024); the hashes pick the fork
                TokenTransfer.block_number.in_(list({b.mined_block for b in confirmed if b.mined_block is not None})),
                TokenTransfer.tx_hash.in_([b.mined_tx_hash for b in confirmed]),
                TokenTransfer.block_hash.in_([b.mined_block_hash for b in confirmed]),
            )
        )
    ).all()
    indexed: dict[tuple[str | None, str | None, str], Counter[tuple[str, str, int]]] = {}
    for t in transfers:
        indexed.setdefault((t.block_hash, t.tx_hash, t.token_address), Counter())[
            _key(t.from_address, t.to_address, t.value)
        ] += 1
    members: dict[uuid.UUID, list[Any]] = {}
    missing = []
    for r in rows:
        b = by_id[r.batch_id]
        found = indexed.get((b.mined_block_hash, b.mined_tx_hash, b.contract), Counter())
        k = _key(*r.args)
        if found[k] > 0:
            found[k] -= 1
            members.setdefault(b.id, []).append(r)
        else:
            missing.append(r.business_ref)
    if missing:
        raise RuntimeError(f"no indexed Transfer for {len(missing)} batch member(s) ({', '.join(missing[:3])}...)")
    fields: dict[uuid.UUID, dict[str, Any]] = {
        bid: dict(
            state=S.CONFIRMED,
            confirmed_block=b.confirmed_block,
            confirmed_at=b.confirmed_at,
            last_error=None,
            sender=b.sender,
            mined_block=b.mined_block,
            mined_block_hash=b.mined_block_hash,
            mined_tx_hash=b.mined_tx_hash,
            mined_status=b.mined_status,
            mined_at=b.mined_at,
            gas_used=None if b.gas_used is None else int(b.gas_used) // len(members[bid]),
        )
        for bid, b in by_id.items()
        if bid in members
    }
    await session.execute(
        update(table)
        .where(table.c.batch_id == bindparam("b_id"), table.c.state == S.BATCHED.value)
        .values(**{k: bindparam(f"v_{k}") for k in next(iter(fields.values()))}, updated_at=func.now()),
        [
            {"b_id": bid, **{f"v_{k}": (v.value if k == "state" else v) for k, v in f.items()}}
            for bid, f in fields.items()
        ],
    )
    # what the handlers read, as plain rows (an ORM instance each cost ~0.7 ms: most of a batch's confirmation)
    done = [ConfirmedMember(**r._mapping, **fields[bid]) for bid, rs in members.items() for r in rs]
    # ConfirmedMember has the ChainOperation attributes the handlers read: plain rows instead of ORM instances
    await handlers.run_confirmed_many(session, done)  # type: ignore[arg-type]  # duck-typed ChainOperation
    for m in done:
        c = str(m.chain_id)
        metrics.TRANSITIONS.labels(c, "CONFIRMED").inc()
        if m.created_at is not None and m.confirmed_at is not None:
            metrics.CONFIRM_LATENCY.labels(c).observe((m.confirmed_at - m.created_at).total_seconds())


async def members_released(session: AsyncSession, batch: ChainOperation, reason: str) -> None:
    """The batch FAILED or was canceled (nothing of it is on chain): its members are sent alone."""
    table = ChainOperation.__table__
    why = f"batch {batch.business_ref} did not go through ({reason}); sent alone"[:2000]
    moved = await session.execute(
        update(table)
        .where(table.c.batch_id == batch.id, table.c.state == S.BATCHED.value)
        .values(state=S.PENDING.value, last_error=why, next_attempt_at=None, updated_at=func.now())
    )
    if rowcount(moved):
        log.info(
            "batch %s (%d members) did not go through (%s): its members are sent alone",
            batch.business_ref,
            rowcount(moved),
            reason,
        )


handlers.register(
    PREFIX, on_confirmed=members_confirmed, on_failed=members_released, on_confirmed_many=members_confirmed_many
)
