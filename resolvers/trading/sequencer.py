"""The per-market sequencer of placeOrder in one API process: group commit.

Every placement of a market takes the market's advisory lock and holds it until its commit (resolvers/trading/
book.py), so a market's throughput is bounded by how long one transaction holds the lock: its round trips, its
Python work, and its own commit. Here concurrent placements of one market in this process queue up; one task per
market (started by the first placement, ending when the queue is empty) takes them in arrival order as a batch,
on its own session:

    lock the market once -> batch.place_batch (gate, risk, matching, settlement, audit for every order) -> commit

and then resolves each caller's future with its own result. The caller publishes its own events after that
(schema/trading.py queues the publish after its unit of work, which has nothing left to commit): exactly once per
event, after the commit that made it true.

Why the invariants hold:
- one transaction at a time changes a book: the batch holds the market lock from before its first read to its
  commit, on any number of processes (the lock is Postgres', not this module's);
- each order of a batch sees the state the earlier ones left (in memory, resolvers/trading/batch.py, or read in the
  same transaction), so matching, the gate's cash and open-sell checks, the risk counters and idempotency (a
  clientOrderId repeated inside one batch is a replay) see the same thing as if they had committed one by one;
- a refusal is data (a REJECTED order) and an invalid request (BadUserInput, NotFound) is raised before the order
  writes anything: both stay with their order and the batch goes on;
- anything else (a ledger refusal after writes began, a unique violation, an unexpected database error) rolls the
  whole batch back and each of its orders runs again alone, in its own transaction (`orders.place_alone`), so one
  bad order cannot fail the others; a deadlock or serialization failure re-runs the batch first (core.transactions);
  a failed COMMIT (it may have taken effect) is answered as an error to every caller of the batch, never re-run.

What it saves: the lock and the COMMIT (its WAL flush) once per batch instead of once per order, and the request
holds no connection while it waits; and the batch's orders are decided in memory between one read and one write
(resolvers/trading/batch.py: 4 statements per batch whatever its size, the book sequence's bump included), so a
market's throughput is bounded by the Python work per order rather than by round trips under the lock. The orders
that path cannot decide (risk limits, replays, a walk past the rows read) run `orders.place_locked` one by one in
the same transaction.

A batch is what arrived while the previous one ran (no waiting to fill one), at most MAX_BATCH orders, so an order
on an idle market runs at once. The queue lives in this process's memory only: a caller is answered after the
commit, so a crash loses no acknowledged order (a client that got no answer retries with its clientOrderId).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.transactions import retry_transient, transient_sqlstate
from resolvers import ledger, unit_of_work
from resolvers.trading import book

log = logging.getLogger("rwa.trading")

MAX_BATCH = 64


@dataclass(slots=True)
class _Job:
    user_id: uuid.UUID
    req: Any  # orders.OrderRequest
    request_id: str | None
    now: datetime | None
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Lane:
    """One market's queue on one engine, and its draining task (None when idle)."""

    engine: AsyncEngine
    market_id: uuid.UUID
    pending: list[_Job] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


_lanes: dict[tuple[int, uuid.UUID], _Lane] = {}


def applies(session: AsyncSession) -> bool:
    """Sequence placements whose session is inside a unit of work (a mutation: its commit is owned, so not using
    the session changes nothing for the caller) and bound to an engine (a session on one shared connection, e.g.
    a test's rolled-back transaction, must see its own writes: it places alone)."""
    return unit_of_work.in_unit(session) and isinstance(session.bind, AsyncEngine)


async def submit(
    session: AsyncSession, user_id: uuid.UUID, req: Any, request_id: str | None, now: datetime | None
) -> Any:
    """Queue the placement on its market's lane and wait for its result (orders.Placed) or error."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    key = (id(engine.sync_engine), req.market_id)
    lane = _lanes.get(key)
    if lane is None:
        lane = _lanes[key] = _Lane(engine, req.market_id)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.pending.append(_Job(user_id, req, request_id, now, future))
    if lane.task is None:
        lane.task = asyncio.create_task(_drain(key, lane), name=f"order-sequencer-{req.market_id}")
    # not shielded: a caller that goes away (client disconnect) cancels only its future; its order is placed all the
    # same (the lane never looks at the futures, and `_answer` skips one that is done), as it was with asyncio.shield,
    # which cost an extra future and two callbacks per order
    return await future


async def _drain(key: tuple[int, uuid.UUID], lane: _Lane) -> None:
    try:
        while lane.pending:
            batch, lane.pending = lane.pending[:MAX_BATCH], lane.pending[MAX_BATCH:]
            try:
                await _run(lane, batch)
            except BaseException as exc:  # noqa: BLE001  (answered to every caller of the batch)
                for job in batch:
                    _answer(job, exc)
                if not isinstance(exc, Exception):
                    raise
    finally:
        lane.task = None
        if lane.pending:  # only if cancelled: fail what is left rather than leave callers waiting
            for job in lane.pending:
                _answer(job, RuntimeError("order sequencer stopped"))
            lane.pending = []
        if _lanes.get(key) is lane:
            del _lanes[key]


def _answer(job: _Job, outcome: Any) -> None:
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)


def _session(engine: AsyncEngine) -> AsyncSession:
    return AsyncSession(engine, expire_on_commit=False, autoflush=False)


async def _run(lane: _Lane, batch: list[_Job]) -> None:
    from resolvers.trading import orders

    if len(batch) > 1:
        async with _session(lane.engine) as session:
            try:
                outcomes = await retry_transient(session, lambda: _together(session, lane.market_id, batch))
            except _CommitFailed as exc:  # it may have committed: running the orders again could place them twice
                for job in batch:
                    _answer(job, exc.__cause__ or exc)
                return
            except Exception as exc:  # noqa: BLE001  (each order runs again alone below)
                log.info("order batch of %d failed (%r); placing its orders one by one", len(batch), exc)
                await session.rollback()
            else:
                for job, outcome in zip(batch, outcomes):
                    _answer(job, outcome)
                return
    for job in batch:
        async with _session(lane.engine) as session:
            try:
                placed = await orders.place_alone(session, job.user_id, job.req, request_id=job.request_id, now=job.now)
            except Exception as exc:  # noqa: BLE001  (the caller's error, as if it had placed alone)
                _answer(job, exc)
            else:
                _answer(job, placed)


async def _together(session: AsyncSession, market_id: uuid.UUID, batch: list[_Job]) -> list[Any]:
    """One transaction: the market lock, every order of the batch in arrival order (one read and one write:
    resolvers/trading/batch.py), one commit. Per order its Placed, or the BadUserInput / NotFound it raised before
    writing anything."""
    from resolvers.trading import batch as batch_placement

    ledger.begin_accounts(session)
    await book.lock_market(session, market_id)
    outcomes = await batch_placement.place_batch(session, market_id, batch)
    try:
        await session.commit()
    except Exception as exc:
        if transient_sqlstate(exc) is not None:
            raise  # rolled back for sure: the batch runs again
        raise _CommitFailed from exc
    ledger.accounts_committed(session)
    return outcomes


class _CommitFailed(Exception):
    """The batch's COMMIT failed (e.g. the connection dropped): whether it took effect is unknown, so its orders are
    answered with the error rather than placed again (a client retries with its clientOrderId)."""
