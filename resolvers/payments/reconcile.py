"""On-chain reconciliation: match indexed stablecoin transfers to payments' deposit addresses.

Ground truth is `token_transfers` (written by the indexer, with reorged rows deleted) and the chain's
`indexer_cursors.finalized_block`. Each pass reads every open payment of a chain with its transfers in one
query, finds those whose observed totals changed, and applies the decision under a row lock, in chunks (one
transaction each, committed as it goes so confirmations are not held back by a big pass):

- transfers seen, total < intended                          -> UNDERPAID (top-ups sum until expiry)
- total >= intended, some transfer not final               -> DETECTED
- all final, total == intended                             -> CONFIRMED, intended amount credited
- all final, total > intended                              -> OVERPAID, intended amount credited, the excess
                                                              booked as refundable (DEPOSITS -> REFUNDS_PAYABLE)
- a reorg removed the transfers before finality            -> AWAITING_FUNDS (nothing was credited)
- an EXPIRED payment whose late transfers are final         -> LATE, everything held for review
A transfer is late when its block time is after the payment's expiry.

Exactly once: the credit is a ledger movement with reference "payment:<id>:credit" (a retry is a no-op) made in
the same transaction as the transition, and a transition is only applied when the locked row is still in the
state the decision was made from. Credit happens only on final blocks, so a reorg never has a credit to undo.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy import and_, exists, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.chain import IndexerCursor
from models.ledger import AccountKind
from models.payments import Payment, PaymentMethod, PaymentState
from models.tokens import TokenTransfer
from resolvers.ledger import DepositCredit, Platform, credit_deposits, post
from resolvers.payments import notify
from resolvers.payments.intents import from_units
from resolvers.payments.states import OPEN_STATES, Actor, HistoryRow, insert_history, transition, utcnow
from resolvers.raw_sql import pg

log = logging.getLogger("rwa.payments.reconcile")
S = PaymentState
LATE_WINDOW = timedelta(days=30)  # how long an EXPIRED payment's address is still watched for late funds
CHUNK = 200  # payments per transaction: the DEPOSITS ledger row stays locked until the chunk commits
_LOCK_BASE = 0x5041_594D_0000  # "PAYM": advisory lock key space, + chain id


@dataclass(frozen=True, slots=True)
class Transfer:
    block_hash: str
    log_index: int
    block_number: int
    tx_hash: str
    from_address: str
    value: int
    block_time: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    target: PaymentState | None  # None: stay
    received_units: int  # every matched transfer, final or not, late or not
    final_units: int
    counted_units: int  # on-time transfers (what the intent is judged on)


@dataclass
class ReconcileStats:
    scanned: int = 0
    changed: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    finalized_block: int | None = None
    # (payment id, new state, commit time) of every transition, for latency measurements
    committed: list[tuple[uuid.UUID, PaymentState, datetime]] = field(default_factory=list)


def is_final(t: Transfer, finalized: int | None) -> bool:
    return finalized is not None and t.block_number <= finalized


def decide(
    state: PaymentState, intended: int, expires_at: datetime, transfers: Sequence[Transfer], finalized: int | None
) -> Decision:
    """Pure: the state the observed transfers call for (the table in the module docstring)."""
    received = sum(t.value for t in transfers)
    final = sum(t.value for t in transfers if is_final(t, finalized))
    on_time = [t for t in transfers if t.block_time is None or t.block_time <= expires_at]
    counted = sum(t.value for t in on_time)
    all_final = all(is_final(t, finalized) for t in on_time)
    target: PaymentState | None = None
    if state in OPEN_STATES:
        if counted == 0:
            target = S.AWAITING_FUNDS
        elif counted < intended:
            target = S.UNDERPAID
        elif not all_final:
            target = S.DETECTED
        else:
            target = S.CONFIRMED if counted == intended else S.OVERPAID
    elif state is S.EXPIRED and received > 0 and received == final:
        target = S.LATE
    return Decision(None if target is state else target, received, final, counted)


_OPEN_SQL = """
SELECT p.id, p.state, p.amount_units, p.expires_at, p.received_units, p.final_units,
       t.block_hash, t.log_index, t.block_number, t.tx_hash, t.from_address, t.value, t.block_time
FROM payments p
LEFT JOIN token_transfers t
  ON t.chain_id = p.chain_id AND t.token_address = p.token_address AND t.to_address = p.deposit_address
WHERE p.chain_id = $1 AND p.method = 'STABLECOIN'
  AND p.state IN ('AWAITING_FUNDS', 'DETECTED', 'UNDERPAID', 'EXPIRED')
  AND (p.state <> 'EXPIRED' OR (p.refundable_amount = 0 AND p.expires_at > $2))
"""
_OPEN_IDS_SQL = _OPEN_SQL + "  AND p.id = ANY($3::uuid[])"


async def _observe(
    session: AsyncSession, chain_id: int, now: datetime, ids: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, tuple[tuple, list[Transfer]]]:
    conn = await pg(session)  # raw asyncpg: every open payment's row each pass (SQLAlchemy's rows cost ~10x)
    rows = (
        await conn.fetch(_OPEN_SQL, chain_id, now - LATE_WINDOW)
        if ids is None
        else await conn.fetch(_OPEN_IDS_SQL, chain_id, now - LATE_WINDOW, list(ids))
    )
    out: dict[uuid.UUID, tuple[tuple, list[Transfer]]] = {}
    for r in rows:
        entry = out.get(r[0])
        if entry is None:
            entry = out[r[0]] = ((S(r[1]), int(r[2]), r[3], int(r[4]), int(r[5])), [])
        if r[6] is not None:
            entry[1].append(Transfer(r[6], r[7], r[8], r[9], r[10], int(r[11]), r[12]))
    return out


# Tables whose planner statistics the join above depends on. Without them (a table filled faster than autovacuum's
# minute-long cycle, e.g. a fresh deployment or a burst) Postgres estimated one row everywhere and probed
# ix_token_transfers_token_block, reading every transfer of the token once per payment: quadratic, 40 s per pass
# at 10k payments instead of milliseconds.
_STATS_TABLES = ("payments", "token_transfers")
_STALE_SQL = """
SELECT relname FROM pg_stat_user_tables
WHERE relname = ANY(:t) AND schemaname = current_schema()
  AND n_mod_since_analyze > 1000 AND n_mod_since_analyze > greatest(n_live_tup - n_mod_since_analyze, 0)"""


async def refresh_stale_statistics(session: AsyncSession, tables: Sequence[str] = _STATS_TABLES) -> list[str]:
    """ANALYZE those of `tables` that more than doubled since their last analyze (cheap: ANALYZE samples a bounded
    number of rows; in a steady state autovacuum has always been there first and this does nothing)."""
    stale = list((await session.execute(text(_STALE_SQL), {"t": list(tables)})).scalars())
    for table in stale:
        await session.execute(text(f'ANALYZE "{table}"'))  # a name pg_stat_user_tables returned for `tables`
    if stale:
        log.info("analyzed %s (statistics stale for the reconciler's join)", ", ".join(stale))
    return stale


async def finalized_block(session: AsyncSession, chain_id: int) -> int | None:
    """The chain's finalized block as far as the indexer has indexed it (rows above `indexed_block` may not
    have been checked against the node's canonical chain yet)."""
    return (
        await session.execute(
            text("SELECT LEAST(finalized_block, indexed_block) FROM indexer_cursors WHERE chain_id = :c"),
            {"c": chain_id},
        )
    ).scalar_one_or_none()


async def reconcile_chain(
    session_factory: async_sessionmaker[AsyncSession],
    chain_id: int,
    *,
    redis: Redis | None = None,
    prefix: str = "",
    now: datetime | None = None,
    chunk: int = CHUNK,
) -> ReconcileStats:
    """One pass over chain `chain_id`. Idempotent: running it again (or concurrently) changes nothing more."""
    now = now or utcnow()
    stats = ReconcileStats()
    async with session_factory() as session:
        try:
            if await refresh_stale_statistics(session):
                # reconcile's own loop of transactions: the statistics refresh stands alone
                await session.commit()
        except Exception:  # e.g. not the tables' owner: reconciling matters more than the plan
            log.warning("could not refresh planner statistics", exc_info=True)
            await session.rollback()
        finalized = await finalized_block(session, chain_id)
        observed = await _observe(session, chain_id, now)
        await session.rollback()
    stats.finalized_block, stats.scanned = finalized, len(observed)
    changed = []
    for pid, ((state, intended, expires_at, received, final), transfers) in observed.items():
        d = decide(state, intended, expires_at, transfers, finalized)
        if d.target is not None or d.received_units != received or d.final_units != final:
            changed.append(pid)
    for start in range(0, len(changed), chunk):
        async with session_factory() as session:
            await _apply_chunk(session, chain_id, changed[start : start + chunk], now, stats)
            events = await notify.commit(session, redis, prefix)
        at = utcnow()
        stats.committed += [(uuid.UUID(e["id"]), S(e["state"]), at) for e in events if e["previousState"] != e["state"]]
    return stats


async def _apply_chunk(
    session: AsyncSession, chain_id: int, ids: list[uuid.UUID], now: datetime, stats: ReconcileStats
) -> None:
    # one reconciler per chain at a time; concurrent passes queue here and then find nothing left to do
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_BASE + chain_id})
    finalized = await finalized_block(session, chain_id)
    payments = {
        p.id: p
        for p in (
            await session.execute(
                select(Payment)
                .where(Payment.id.in_(ids))
                .order_by(Payment.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
    }
    fresh = await _observe(session, chain_id, now, ids)
    resync: dict[uuid.UUID, Sequence[Transfer]] = {}
    credits: list[DepositCredit] = []  # the chunk's credits, posted together (3 statements, not 2 per payment)
    history: list[HistoryRow] = []  # and its payment_transitions rows (one INSERT, not one ORM object each)
    for pid, (_, transfers) in fresh.items():
        payment = payments.get(pid)
        if payment is None or payment.amount_units is None:
            continue
        d = decide(payment.state, int(payment.amount_units), payment.expires_at, transfers, finalized)
        if d.target is None and d.received_units == payment.received_units and d.final_units == payment.final_units:
            continue
        stats.changed += 1
        resync[pid] = transfers
        decimals = payment.decimals or 0
        payment.received_units, payment.final_units = d.received_units, d.final_units
        payment.received_amount = from_units(d.final_units, decimals)
        payment.final_block = max((t.block_number for t in transfers), default=None)
        payment.updated_at = now
        if d.target is None:
            notify.queue(session, payment, payment.state)  # amounts changed: live update, no transition
            continue
        await _settle(session, payment, d, decimals, credits)
        transition(
            session,
            payment,
            d.target,
            actor=Actor.SYSTEM,
            reason=f"received {from_units(d.received_units, decimals)} (final {from_units(d.final_units, decimals)})"
            f" at finalized block {finalized}",
            history=history,
        )
        stats.transitions[d.target.value] = stats.transitions.get(d.target.value, 0) + 1
    await credit_deposits(session, credits)
    await insert_history(session, history)
    await _sync_matches(session, chain_id, resync)


async def _settle(
    session: AsyncSession, payment: Payment, d: Decision, decimals: int, credits: list[DepositCredit]
) -> None:
    """Ledger effects of reaching a settled state; every movement has a per-payment reference (retry-safe). The
    credit is appended to `credits`, which the caller posts in the same transaction before it commits."""
    details = {"paymentId": str(payment.id), "chainId": payment.chain_id}
    if d.target in (S.CONFIRMED, S.OVERPAID):
        credits.append((payment.user_id, payment.amount, payment.currency, f"payment:{payment.id}:credit", details))
        payment.credited_amount = payment.amount
        excess = from_units(d.counted_units - int(payment.amount_units or 0), decimals)
        if excess > 0:
            await _hold(session, payment, excess, "excess")
    elif d.target is S.LATE:
        await _hold(session, payment, from_units(d.received_units, decimals), "hold")


async def _hold(session: AsyncSession, payment: Payment, amount: Decimal, what: str) -> None:
    """Money received but not credited: owed back to the payer until refunded (or accepted)."""
    await post(
        session,
        kind="HOLD",
        reference=f"payment:{payment.id}:{what}",
        currency=payment.currency,
        details={"paymentId": str(payment.id)},
        legs=[(Platform(AccountKind.DEPOSITS), -amount), (Platform(AccountKind.REFUNDS_PAYABLE), amount)],
    )
    payment.refundable_amount = amount


_INSERT_MATCHES = """
INSERT INTO payment_matches (chain_id, block_hash, log_index, payment_id, block_number, tx_hash, from_address, value)
SELECT $1, * FROM unnest($2::text[], $3::int[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::numeric[])"""


async def _sync_matches(session: AsyncSession, chain_id: int, current: dict[uuid.UUID, Sequence[Transfer]]) -> None:
    """Replace the matches of these payments with the transfers seen now (two statements per chunk)."""
    if not current:
        return
    conn = await pg(session)
    await conn.execute("DELETE FROM payment_matches WHERE payment_id = ANY($1::uuid[])", list(current))
    rows = [
        (t.block_hash, t.log_index, pid, t.block_number, t.tx_hash, t.from_address, Decimal(t.value))
        for pid, transfers in current.items()
        for t in transfers
    ]
    if rows:
        await conn.execute(_INSERT_MATCHES, chain_id, *map(list, zip(*rows)))


async def expire_payments(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    redis: Redis | None = None,
    prefix: str = "",
    now: datetime | None = None,
    limit: int = 1000,
) -> int:
    """AWAITING_FUNDS past expiry -> EXPIRED; UNDERPAID past expiry with every transfer final -> EXPIRED with what
    arrived held for refund. DETECTED never expires: the full amount arrived in time. Idempotent."""
    now = now or utcnow()
    done = 0
    async with session_factory() as session:
        on_time_transfer = exists().where(
            TokenTransfer.chain_id == Payment.chain_id,
            TokenTransfer.token_address == Payment.token_address,
            TokenTransfer.to_address == Payment.deposit_address,
            or_(TokenTransfer.block_time.is_(None), TokenTransfer.block_time <= Payment.expires_at),
        )
        # A stablecoin payment expires only once the indexer has polled its chain after the expiry moment (so a
        # transfer mined just in time is not missed because of indexer lag), and only with no on-time transfer
        # left unreconciled (the reconciler settles those).
        indexed_past_expiry = IndexerCursor.updated_at > Payment.expires_at + timedelta(seconds=1)
        rows = (
            (
                await session.execute(
                    select(Payment)
                    .outerjoin(IndexerCursor, IndexerCursor.chain_id == Payment.chain_id)
                    .where(
                        Payment.state.in_([S.AWAITING_FUNDS, S.UNDERPAID]),
                        Payment.expires_at < now,
                        or_(
                            Payment.method == PaymentMethod.BANK_TRANSFER,
                            and_(indexed_past_expiry, or_(Payment.state == S.UNDERPAID, ~on_time_transfer)),
                        ),
                    )
                    .order_by(Payment.expires_at)
                    .limit(limit)
                    .with_for_update(of=Payment, skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            )
            .scalars()
            .all()
        )
        for payment in rows:
            if payment.state is S.UNDERPAID:
                if payment.received_units != payment.final_units:
                    continue  # wait until what arrived is final
                await _hold(session, payment, from_units(int(payment.final_units), payment.decimals or 0), "hold")
            transition(session, payment, S.EXPIRED, actor=Actor.SYSTEM, now=now, reason="expired")
            done += 1
        await notify.commit(session, redis, prefix)
    return done
