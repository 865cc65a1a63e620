"""An entry's transaction and account exist, and stay: what the foreign keys of ledger_entries guaranteed, kept by
the ledger's triggers since migration 0025 (one set-wise check per INSERT statement instead of one per entry)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.ledger import AccountKind
from resolvers import ledger
from resolvers.ledger import Platform, UserAccount

_ENTRIES = (
    "INSERT INTO ledger_entries (transaction_id, account_id, currency, amount) "
    "VALUES (:t, :a, 'USD', 1), (:t, :b, 'USD', -1)"
)


def _fk(exc: pytest.ExceptionInfo[DBAPIError]) -> str:
    """The SQLSTATE of a refused statement (23503: foreign_key_violation, as the foreign keys raised)."""
    return exc.value.orig.sqlstate  # type: ignore[union-attr]  # asyncpg's error behind SQLAlchemy's


async def test_entries_need_their_transaction_and_account(session, make_user):  # type: ignore[no-untyped-def]
    user = await make_user()
    await ledger.credit_deposit(session, user.id, Decimal("3"), "USD", f"refs:{user.id}")
    acc = await ledger.account_id(session, UserAccount(user.id), "USD")
    deposits = await ledger.account_id(session, Platform(AccountKind.DEPOSITS), "USD")
    txn = (
        await session.execute(
            text("SELECT transaction_id FROM ledger_entries WHERE account_id = :a LIMIT 1"), {"a": acc}
        )
    ).scalar_one()
    for t, a in ((uuid.uuid4(), acc), (txn, uuid.uuid4())):
        with pytest.raises(DBAPIError, match="is not in ledger_") as exc:
            async with session.begin_nested():
                await session.execute(text(_ENTRIES), {"t": t, "a": a, "b": deposits})
        assert _fk(exc) == "23503"
    # both exist: accepted (balanced), in one statement with many entries of the same keys
    await session.execute(text(_ENTRIES), {"t": txn, "a": acc, "b": deposits})
    balance = (
        await session.execute(text("SELECT sum(amount) FROM ledger_entries WHERE transaction_id = :t"), {"t": txn})
    ).scalar_one()
    assert balance == 0


async def test_referenced_transactions_and_accounts_cannot_go(session, make_user):  # type: ignore[no-untyped-def]
    user = await make_user()
    await ledger.credit_deposit(session, user.id, Decimal("2"), "USD", f"keep:{user.id}")
    acc = await ledger.account_id(session, UserAccount(user.id), "USD")
    txn = (
        await session.execute(
            text("SELECT transaction_id FROM ledger_entries WHERE account_id = :a LIMIT 1"), {"a": acc}
        )
    ).scalar_one()
    refused = [
        ("DELETE FROM ledger_transactions WHERE id = :t", {"t": txn}),
        ("DELETE FROM ledger_accounts WHERE id = :a", {"a": acc}),
        ("UPDATE ledger_transactions SET id = :n WHERE id = :t", {"t": txn, "n": uuid.uuid4()}),
        ("UPDATE ledger_accounts SET id = :n WHERE id = :a", {"a": acc, "n": uuid.uuid4()}),
        ("TRUNCATE ledger_accounts CASCADE", {}),
        ("TRUNCATE ledger_transactions", {}),
    ]
    for sql, params in refused:
        with pytest.raises(DBAPIError) as exc:
            async with session.begin_nested():
                await session.execute(text(sql), params)
        assert _fk(exc) == "23503", sql
    # still there, unchanged
    assert (await session.execute(text("SELECT count(*) FROM ledger_accounts WHERE id = :a"), {"a": acc})).scalar() == 1
    [bal] = await ledger.balances(session, user.id)
    assert bal.available == Decimal("2")
    # an account nothing refers to may be re-keyed and deleted (as the foreign keys allowed), and other updates of a
    # referenced one pass
    other = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO ledger_accounts (id, owner_id, kind, currency, balance) VALUES (:i, :u, 'AVAILABLE', 'EURQ', 0)"
        ),
        {"i": other, "u": user.id},
    )
    renamed = uuid.uuid4()
    await session.execute(text("UPDATE ledger_accounts SET id = :n WHERE id = :i"), {"i": other, "n": renamed})
    await session.execute(text("DELETE FROM ledger_accounts WHERE id = :n"), {"n": renamed})
    await session.execute(text("UPDATE ledger_accounts SET balance = balance WHERE id = :a"), {"a": acc})
