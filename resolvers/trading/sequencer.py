"""The per-market sequencer of placeOrder in one API process: group commit.

Every placement of a market takes the market's advisory lock and holds it until its commit (resolvers/trading/
book.py), so a market's throughput is bounded by how long one transaction holds the lock: its round trips, its
Python work, and its own commit. Here concurrent placements of one market in this process queue up; one task per
market (started by the first placement, ending when the queue is empty) takes them in arrival order as a batch,
on its own session:

    lock the market once -> batch.place_batch (gate, risk, matching, settlement, audit for every order) -> commit

and then hands every order's events to the market data sender (market_data.queue, no await in between: in commit
order) before it resolves each caller's future with its own result. The lane publishes, not the caller: a caller
whose task is cancelled while its order waits (a client gone, uvicorn's shutdown) still gets its order placed, and
its events must go out all the same, exactly once, after the commit that made them true; the caller's own publish
(schema/trading.py, after its unit of work) only waits for them to be sent.

The cancel paths (cancelOrder, cancelAllOrders, closing a market, the kill switch, expiry) commit in the caller's
task otherwise: `detached` runs such work on its own session in a task of its own, which commits and hands its
events over whether or not the caller still waits. `drain` waits for all of it on shutdown.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.transactions import retry_transient, transient_sqlstate
from resolvers import ledger, unit_of_work
from resolvers.trading import book, market_data
from resolvers.unit_of_work import UnitOfWork

log = logging.getLogger("rwa.trading")

MAX_BATCH = 64
T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    user_id: uuid.UUID
    req: Any  # orders.OrderRequest
    request_id: str | None
    now: datetime | None
    future: asyncio.Future[Any]
    hub: Any  # the PubSubHub the lane publishes the order's events to after its commit (None: the caller does)


@dataclass(slots=True)
class _Lane:
    """One market's queue on one engine, and its draining task (None when idle)."""

    engine: AsyncEngine
    market_id: uuid.UUID
    pending: list[_Job] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


_lanes: dict[tuple[int, uuid.UUID], _Lane] = {}
_detached: set[asyncio.Task[Any]] = set()


def applies(session: AsyncSession) -> bool:
    """Sequence placements whose session is inside a unit of work (a mutation: its commit is owned, so not using
    the session changes nothing for the caller) and bound to an engine (a session on one shared connection, e.g.
    a test's rolled-back transaction, must see its own writes: it places alone)."""
    return unit_of_work.in_unit(session) and isinstance(session.bind, AsyncEngine)


async def submit(
    session: AsyncSession, user_id: uuid.UUID, req: Any, request_id: str | None, now: datetime | None, hub: Any = None
) -> Any:
    """Queue the placement on its market's lane and wait for its result (orders.Placed) or error. With `hub`, the
    lane publishes the order's events after its commit (the Placed's events are then already queued)."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    key = (id(engine.sync_engine), req.market_id)
    lane = _lanes.get(key)
    if lane is None:
        lane = _lanes[key] = _Lane(engine, req.market_id)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lane.pending.append(_Job(user_id, req, request_id, now, future, hub))
    if lane.task is None:
        lane.task = asyncio.create_task(_drain(key, lane), name=f"order-sequencer-{req.market_id}")
    # not shielded: a caller that goes away (client disconnect) cancels only its future; its order is placed all the
    # same (the lane never looks at the futures, and `_answer` skips one that is done) and its events published by
    # the lane, as it was with asyncio.shield, which cost an extra future and two callbacks per order
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
                for job, outcome in zip(batch, outcomes):  # every event queued before any caller runs again
                    if job.hub is not None and not isinstance(outcome, BaseException):
                        market_data.queue(job.hub, outcome.events)
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
                if job.hub is not None:
                    market_data.queue(job.hub, placed.events)
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


async def detached(
    session: AsyncSession, hub: Any, work: Callable[[AsyncSession], Awaitable[T]], events: Callable[[T], Any]
) -> T:
    """Run `work(session)` (a write that commits at the end of its unit of work and returns what `events` turns into
    its market_data.Events) so that a committed transaction's events are published exactly once even if the caller
    goes away: on its own session, in its own unit of work (one transaction, retried on a deadlock), in a task that
    is not the caller's and hands the events to the sender right after its commit. The caller waits for the result
    (its errors are the caller's); cancelling the caller does not cancel the work.

    Where that does not apply (no hub, or a session that must see its own writes: `applies`), `work` runs on
    `session` in the caller's unit of work, and the caller publishes after it commits, as before."""
    if hub is None or not applies(session):
        return await work(session)
    assert isinstance(session.bind, AsyncEngine)
    return await run_detached(session.bind, hub, work, events)


async def run_detached(
    engine: AsyncEngine, hub: Any, work: Callable[[AsyncSession], Awaitable[T]], events: Callable[[T], Any]
) -> T:
    """`detached`'s task, for callers without a unit of work (the expiry job): the work on its own session and unit
    of work, its events queued after its commit; shielded from the caller's cancellation."""

    async def run() -> T:
        async with _session(engine) as session:
            uow = UnitOfWork(session)

            async def once() -> T:
                result = await work(session)
                uow.after_commit(lambda: _queue(hub, events(result)))  # called with no await after the commit
                return result

            return await uow.run(once)

    task = asyncio.create_task(run(), name="trading-detached-write")
    _detached.add(task)
    task.add_done_callback(_forget)
    return await asyncio.shield(task)


def _forget(task: asyncio.Task[Any]) -> None:
    _detached.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a caller that went away no longer waits for it (already logged as its error)


async def _queue(hub: Any, events: Any) -> None:
    market_data.queue(hub, events)


async def drain(timeout: float) -> bool:
    """On shutdown (after the server stopped taking requests, before Redis and the engine close): wait at most
    `timeout` seconds for the lanes' batches and the detached writes in flight to commit and for every queued market
    data message to be sent. True when all of it finished in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    busy = [lane.task for lane in list(_lanes.values()) if lane.task is not None] + list(_detached)
    if busy:
        _, left = await asyncio.wait(busy, timeout=timeout)
        if left:
            log.warning("order sequencer: %d task(s) still running after %.1fs at shutdown", len(left), timeout)
    return await market_data.flush(max(0.0, deadline - loop.time())) and all(t.done() for t in busy)
