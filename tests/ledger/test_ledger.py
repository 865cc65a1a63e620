"""The cash ledger: balanced movements, idempotency per reference, no negative user balances, zero sum."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.errors import BadUserInput, Conflict
from resolvers import ledger
from resolvers.ledger import UserAccount


async def test_credit_reserve_release_and_zero_sum(session, make_user):
    user = await make_user()
    assert await ledger.credit_deposit(session, user.id, Decimal("100.50"), "USD", "test:credit:1")
    assert await ledger.reserve(session, user.id, Decimal("40.25"), "USD", "test:reserve:1")
    [bal] = await ledger.balances(session, user.id)
    assert (bal.currency, bal.available, bal.reserved) == ("USD", Decimal("60.25"), Decimal("40.25"))
    assert await ledger.release(session, user.id, Decimal("40.25"), "USD", "test:release:1")
    [bal] = await ledger.balances(session, user.id)
    assert bal.available == Decimal("100.50") and bal.reserved == 0
    totals = await ledger.total_by_currency(session)  # other tests may have committed other currencies
    assert totals["USD"] == 0 and all(t == 0 for t in totals.values())


async def test_same_reference_posts_once(session, make_user):
    user = await make_user()
    results = [
        await ledger.credit_deposit(session, user.id, Decimal("5"), "USD", "payment:42:credit") for _ in range(3)
    ]
    assert results == [True, False, False]
    [bal] = await ledger.balances(session, user.id)
    assert bal.available == Decimal("5")


async def test_overspending_is_refused_and_changes_nothing(session, make_user):
    user = await make_user()
    await ledger.credit_deposit(session, user.id, Decimal("10"), "USD", "c1")
    with pytest.raises(Conflict) as exc:
        async with session.begin_nested():
            await ledger.reserve(session, user.id, Decimal("10.01"), "USD", "r1")
    assert exc.value.extensions["reason"] == "INSUFFICIENT_FUNDS"
    [bal] = await ledger.balances(session, user.id)
    assert bal.available == Decimal("10") and bal.reserved == 0


async def test_database_refuses_unbalanced_entries_and_edits(session, make_user):
    user = await make_user()
    await ledger.credit_deposit(session, user.id, Decimal("1"), "USD", "c2")
    acc = await ledger.account_id(session, UserAccount(user.id), "USD")
    txn = (await session.execute(text("SELECT transaction_id FROM ledger_entries LIMIT 1"))).scalar_one()
    with pytest.raises(DBAPIError, match="does not balance"):
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO ledger_entries (transaction_id, account_id, currency, amount) "
                    "VALUES (:t, :a, 'USD', 1)"
                ),
                {"t": txn, "a": acc},
            )
    with pytest.raises(DBAPIError, match="append-only"):
        async with session.begin_nested():
            await session.execute(text("UPDATE ledger_entries SET amount = 0"))


async def test_concurrent_reservations_never_overspend(engine, make_user):
    """Twenty concurrent reservations of 10 against 100 of cash: exactly ten succeed (committed data)."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from models.identity import User

    factory = async_sessionmaker(engine, expire_on_commit=False)
    import uuid

    async with factory() as s:
        user = User(
            id=uuid.uuid4(), email=f"c-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", roles=["INVESTOR"]
        )
        s.add(user)
        await s.commit()
        await ledger.credit_deposit(s, user.id, Decimal("100"), "USDX", f"c:{user.id}")
        await s.commit()

    async def attempt(i: int) -> bool:
        async with factory() as s:
            try:
                await ledger.reserve(s, user.id, Decimal("10"), "USDX", f"r:{user.id}:{i}")
                await s.commit()
                return True
            except Conflict:
                await s.rollback()
                return False

    outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert sum(outcomes) == 10
    async with factory() as s:
        [bal] = await ledger.balances(s, user.id)
        assert (bal.available, bal.reserved) == (Decimal(0), Decimal(100))
        totals = await ledger.total_by_currency(s)
        assert totals["USDX"] == 0


async def test_batch_credits_post_each_reference_once_and_balance(session, make_user):
    """credit_deposits: a reference repeated in one batch, already posted singly, or repeated in a later batch
    credits once; accounts are created on first use; every transaction balances and the ledger sums to zero."""
    a, b = await make_user(), await make_user()
    assert await ledger.credit_deposit(session, a.id, Decimal("1"), "USDB", "batch:pre")
    first = await ledger.credit_deposits(
        session,
        [
            (a.id, Decimal("10"), "USDB", "batch:1", {"n": 1}),
            (b.id, Decimal("20"), "USDB", "batch:2", None),
            (a.id, Decimal("10"), "USDB", "batch:1", {"n": 1}),  # duplicate within the batch
            (a.id, Decimal("1"), "USDB", "batch:pre", None),  # posted before by credit_deposit
            (b.id, Decimal("3.5"), "EURB", "batch:3", None),  # second currency, new accounts
        ],
    )
    assert first == {"batch:1", "batch:2", "batch:3"}
    second = await ledger.credit_deposits(
        session,
        [
            (a.id, Decimal("10"), "USDB", "batch:1", None),
            (b.id, Decimal("20"), "USDB", "batch:2", None),
            (a.id, Decimal("0.25"), "USDB", "batch:4", None),
        ],
    )
    assert second == {"batch:4"}
    assert await ledger.credit_deposits(session, []) == set()
    assert not await ledger.credit_deposit(session, a.id, Decimal("10"), "USDB", "batch:1")
    assert {(x.currency, x.available) for x in await ledger.balances(session, a.id)} == {("USDB", Decimal("11.25"))}
    assert {(x.currency, x.available) for x in await ledger.balances(session, b.id)} == {
        ("EURB", Decimal("3.5")),
        ("USDB", Decimal("20")),
    }
    rows = (
        await session.execute(
            text(
                "SELECT t.reference, count(*), sum(e.amount), t.details FROM ledger_transactions t "
                "JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.reference LIKE 'batch:%' "
                "GROUP BY t.reference, t.details ORDER BY t.reference"
            )
        )
    ).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [(f"batch:{k}", 2, 0) for k in ("1", "2", "3", "4", "pre")]
    assert rows[0][3] == {"n": 1}
    totals = await ledger.total_by_currency(session)
    assert totals["USDB"] == 0 and totals["EURB"] == 0


async def test_batch_credit_refuses_non_positive_amounts(session, make_user):
    user = await make_user()
    with pytest.raises(BadUserInput):
        await ledger.credit_deposits(session, [(user.id, Decimal("0"), "USDB", "batch:zero", None)])
    assert await ledger.balances(session, user.id) == []


async def test_concurrent_batches_credit_once(engine, make_user):
    """Two sessions posting overlapping batches at once (committed data): each reference credited once."""
    import uuid

    from sqlalchemy.ext.asyncio import async_sessionmaker

    from models.identity import User

    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as s:
        user = User(
            id=uuid.uuid4(), email=f"b-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", roles=["INVESTOR"]
        )
        s.add(user)
        await s.commit()
    refs = [f"cb:{user.id}:{i}" for i in range(30)]

    async def batch(part: list[str]) -> set[str]:
        async with factory() as s:
            posted = await ledger.credit_deposits(s, [(user.id, Decimal("2"), "USDC9", r, None) for r in part])
            await asyncio.sleep(0.05)  # hold the locks so the other batch queues behind them
            await s.commit()
            return posted

    one, two = await asyncio.gather(batch(refs[:20]), batch(refs[10:]))
    assert one | two == set(refs) and not one & two
    async with factory() as s:
        [bal] = await ledger.balances(s, user.id)
        assert bal.available == Decimal(60)
        assert (await ledger.total_by_currency(s))["USDC9"] == 0
