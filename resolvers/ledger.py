"""The double-entry cash ledger (models/ledger.py): the only code that moves cash.

    await post(session, kind="CREDIT", reference=f"payment:{pid}:credit", currency="USD",
               legs=[(Platform(AccountKind.DEPOSITS), -amount), (UserAccount(uid, AccountKind.AVAILABLE), amount)])

`post` is idempotent per `reference` (returns False when it was already posted), locks the touched accounts in
id order (no deadlocks between concurrent movements), refuses to take a user account below zero (Conflict,
reason INSUFFICIENT_FUNDS; the database's CHECK constraint backs this up) and writes all entries in one
INSERT, which a trigger checks balances to zero. Hot path: raw asyncpg on the session's connection
(resolvers/raw_sql.py), 2 statements per movement (a few more the first time an account is used).
`credit_deposits` posts a batch of deposit credits in 3 statements whatever its size (the reconciler's path).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.errors import BadUserInput, Conflict
from models.ledger import AccountKind, LedgerAccount
from resolvers.raw_sql import pg
from resolvers.trading.ids import new_id

USER_KINDS = (AccountKind.AVAILABLE, AccountKind.RESERVED)


@dataclass(frozen=True)
class UserAccount:
    user_id: uuid.UUID
    kind: AccountKind = AccountKind.AVAILABLE


@dataclass(frozen=True)
class Platform:
    kind: AccountKind


AccountRef = UserAccount | Platform


@dataclass(frozen=True)
class Balance:
    currency: str
    available: Decimal
    reserved: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved


async def account_id(session: AsyncSession, ref: AccountRef, currency: str) -> uuid.UUID:
    owner = ref.user_id if isinstance(ref, UserAccount) else None
    await session.execute(
        insert(LedgerAccount)
        .values(id=uuid.uuid4(), owner_id=owner, kind=ref.kind, currency=currency, balance=Decimal(0))
        .on_conflict_do_nothing()
    )
    return (
        await session.execute(
            select(LedgerAccount.id).where(
                LedgerAccount.owner_id.is_(None) if owner is None else LedgerAccount.owner_id == owner,
                LedgerAccount.kind == ref.kind,
                LedgerAccount.currency == currency,
            )
        )
    ).scalar_one()


# user legs match (owner, kind) pairs exactly; platform legs have no owner (NULL never equals, so a second arm)
_LOCK_ACCOUNTS = """
SELECT a.id, a.owner_id, a.kind::text AS kind, a.balance FROM ledger_accounts a
WHERE a.currency = $1
  AND ((a.owner_id, a.kind) IN (SELECT * FROM unnest($2::uuid[], $3::ledger_account_kind[]))
       OR (a.owner_id IS NULL AND a.kind = ANY($4::ledger_account_kind[])))
ORDER BY a.id FOR UPDATE OF a"""
# the same, after recording the transaction (idempotent per reference) in the same round trip; `txn` is NULL on
# every row when the reference was already posted
_RECORD_AND_LOCK = """
WITH t AS (INSERT INTO ledger_transactions (id, kind, reference, details) VALUES ($5, $6, $7, $8)
           ON CONFLICT (reference) DO NOTHING RETURNING id)
SELECT (SELECT id FROM t) AS txn, a.id, a.owner_id, a.kind::text AS kind, a.balance FROM ledger_accounts a
WHERE a.currency = $1
  AND ((a.owner_id, a.kind) IN (SELECT * FROM unnest($2::uuid[], $3::ledger_account_kind[]))
       OR (a.owner_id IS NULL AND a.kind = ANY($4::ledger_account_kind[])))
ORDER BY a.id FOR UPDATE OF a"""
_CREATE_ACCOUNTS = """
INSERT INTO ledger_accounts (id, owner_id, kind, currency, balance)
SELECT gen_random_uuid(), o, k, $1, 0 FROM unnest($2::uuid[], $3::ledger_account_kind[]) AS u(o, k)
ON CONFLICT DO NOTHING"""
# entries in one multi-row INSERT (the balance trigger checks each statement as a whole) and the running balances,
# in one round trip
_WRITE = """
WITH e AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, amount)
           SELECT $1, a, $2, m FROM unnest($3::uuid[], $4::numeric[]) WITH ORDINALITY AS u(a, m, n) ORDER BY n)
UPDATE ledger_accounts a SET balance = a.balance + d.delta
FROM unnest($5::uuid[], $6::numeric[]) AS d(id, delta) WHERE a.id = d.id"""


# (currency, (owner, kind)) of accounts seen locked, i.e. committed: no need to try creating them again
_existing_accounts: set[tuple[str, tuple[uuid.UUID | None, str]]] = set()


def _key(ref: AccountRef) -> tuple[uuid.UUID | None, str]:
    return (ref.user_id if isinstance(ref, UserAccount) else None, ref.kind.value)


def _lock_args(
    currency: str, keys: list[tuple[uuid.UUID | None, str]]
) -> tuple[list[tuple[uuid.UUID | None, str]], list[str], tuple[Any, ...]]:
    """(user keys, platform kinds, the parameters of _LOCK_ACCOUNTS) of the accounts `keys` name."""
    users = sorted({k for k in keys if k[0] is not None}, key=str)
    platform = sorted({k[1] for k in keys if k[0] is None})
    return users, platform, (currency, [u for u, _ in users], [k for _, k in users], platform)


async def locked_balances(session: AsyncSession, currency: str, refs: list[AccountRef]) -> dict[AccountRef, Decimal]:
    """Create the accounts if missing, lock them in id order (as `post` does, so no deadlock with it) and return
    their balances: for a movement whose amounts depend on a balance (the `post` that follows in the same
    transaction finds the locks already held)."""
    conn = await pg(session)
    keys = [_key(ref) for ref in refs]
    await conn.execute(_CREATE_ACCOUNTS, currency, [u for u, _ in keys], [k for _, k in keys])
    rows = await conn.fetch(_LOCK_ACCOUNTS, *_lock_args(currency, keys)[2])
    found = {(r["owner_id"], r["kind"]): r["balance"] for r in rows}
    return {ref: found[_key(ref)] for ref in refs}


async def post(
    session: AsyncSession,
    *,
    kind: str,
    reference: str,
    currency: str,
    legs: list[tuple[AccountRef, Decimal]],
    details: dict[str, Any] | None = None,
) -> bool:
    """Record one balanced movement. Returns False (and changes nothing) if `reference` was already posted."""
    if sum((amount for _, amount in legs), Decimal(0)) != 0:
        raise ValueError(f"ledger movement {reference} does not balance")
    if any(not amount.is_finite() for _, amount in legs):
        raise BadUserInput("amount must be a finite number")
    conn = await pg(session)
    keys = [_key(ref) for ref, _ in legs]
    users, platform, lock_args = _lock_args(currency, keys)
    if any((currency, k) not in _existing_accounts for k in keys):
        # Create missing accounts before locking any: an INSERT that meets another transaction's uncommitted
        # copy of the same account waits for it, and must not wait while holding a lock that one needs
        # (that was a deadlock between concurrent first reservations). A replayed reference creates nothing.
        if await conn.fetchval("SELECT 1 FROM ledger_transactions WHERE reference = $1", reference):
            return False
        await conn.execute(_CREATE_ACCOUNTS, currency, [u for u, _ in keys], [k for _, k in keys])
    txn_id = uuid.uuid4()
    rows = await conn.fetch(_RECORD_AND_LOCK, *lock_args, txn_id, kind, reference, json.dumps(details or {}))
    if rows and rows[0]["txn"] is None:
        return False
    if not rows and await conn.fetchval("SELECT id FROM ledger_transactions WHERE reference = $1", reference) != txn_id:
        return False  # posted before (and its accounts do not exist: nothing was locked)
    if len(rows) < len(users) + len(platform):  # first movement of an account: create it, then lock all in id order
        await conn.execute(_CREATE_ACCOUNTS, currency, [u for u, _ in keys], [k for _, k in keys])
        rows = await conn.fetch(_LOCK_ACCOUNTS, *lock_args)
    accounts = {(r["owner_id"], r["kind"]): r for r in rows}
    if len(_existing_accounts) > 100_000:
        _existing_accounts.clear()
    _existing_accounts.update((currency, k) for k in accounts)
    deltas: dict[uuid.UUID, Decimal] = {}
    for key, (_, amount) in zip(keys, legs):
        acc_id = accounts[key]["id"]
        deltas[acc_id] = deltas.get(acc_id, Decimal(0)) + amount
    for key, account in accounts.items():
        if key[0] is not None and account["balance"] + deltas[account["id"]] < 0:
            raise Conflict(f"insufficient {key[1].lower()} {currency} balance", reason="INSUFFICIENT_FUNDS")
    await conn.execute(
        _WRITE,
        txn_id,
        currency,
        [accounts[k]["id"] for k in keys],
        [a for _, a in legs],
        list(deltas),
        list(deltas.values()),
    )
    return True


MAX_CREDIT = Decimal(10) ** 15  # one credit; payments accept the same (resolvers/payments/intents.py)


async def credit_deposit(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    reference: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """Money arrived from outside (a settled payment, an admin credit in dev)."""
    # entries and balances are NUMERIC(38, 18): 1E+25 overflowed the INSERT and came back INTERNAL (fuzz gate)
    if not amount.is_finite() or amount <= 0 or amount >= MAX_CREDIT:
        raise BadUserInput("amount must be positive and below 10^15", field="amount")
    return await post(
        session,
        kind="CREDIT",
        reference=reference,
        currency=currency,
        details=details,
        legs=[(Platform(AccountKind.DEPOSITS), -amount), (UserAccount(user_id), amount)],
    )


# --- batch of deposit credits (the reconciler confirms payments in chunks) ---
_RECORD_MANY = """
INSERT INTO ledger_transactions (id, kind, reference, details)
SELECT i, 'CREDIT', r, d::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(i, r, d)
ON CONFLICT (reference) DO NOTHING RETURNING reference"""
# every user AVAILABLE account and the DEPOSITS account of each currency in the batch, locked in id order
_LOCK_MANY = """
SELECT a.id, a.owner_id, a.currency FROM ledger_accounts a
WHERE (a.kind = 'AVAILABLE' AND (a.owner_id, a.currency) IN (SELECT * FROM unnest($1::uuid[], $2::text[])))
   OR (a.owner_id IS NULL AND a.kind = 'DEPOSITS' AND a.currency = ANY($3::text[]))
ORDER BY a.id FOR UPDATE OF a"""
_CREATE_MANY = """
INSERT INTO ledger_accounts (id, owner_id, kind, currency, balance)
SELECT gen_random_uuid(), o, k, c, 0 FROM unnest($1::uuid[], $2::ledger_account_kind[], $3::text[]) AS u(o, k, c)
ON CONFLICT DO NOTHING"""
_WRITE_MANY = """
WITH e AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, amount)
           SELECT t, a, c, m FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[]) WITH ORDINALITY
                                  AS u(t, a, c, m, n) ORDER BY n)
UPDATE ledger_accounts a SET balance = a.balance + d.delta
FROM unnest($5::uuid[], $6::numeric[]) AS d(id, delta) WHERE a.id = d.id"""

DepositCredit = tuple[uuid.UUID, Decimal, str, str, dict[str, Any] | None]  # user, amount, currency, reference, details


async def credit_deposits(session: AsyncSession, items: list[DepositCredit]) -> set[str]:
    """Many `credit_deposit`s in a few statements, whatever their number: record the transactions (idempotent per
    reference: a reference already posted, or repeated in `items`, credits once), lock the accounts in id order,
    write every entry in one INSERT (each transaction DEPOSITS -amount / user AVAILABLE +amount, so the trigger
    finds each balanced) and the balances from aggregated deltas. Returns the references posted by this call."""
    first: dict[str, DepositCredit] = {}
    for item in items:
        if not item[1].is_finite() or item[1] <= 0:
            raise BadUserInput("amount must be positive", field="amount")
        first.setdefault(item[3], item)
    if not first:
        return set()
    conn = await pg(session)
    txn_ids = {ref: uuid.uuid4() for ref in first}
    posted = {
        r["reference"]
        for r in await conn.fetch(
            _RECORD_MANY, list(txn_ids.values()), list(txn_ids), [json.dumps(first[r][4] or {}) for r in txn_ids]
        )
    }
    if not posted:
        return posted
    todo = [first[r] for r in txn_ids if r in posted]
    users = sorted({(i[0], i[2]) for i in todo}, key=str)
    currencies = sorted({i[2] for i in todo})
    lock_args = ([u for u, _ in users], [c for _, c in users], currencies)
    rows = await conn.fetch(_LOCK_MANY, *lock_args)
    if len(rows) < len(users) + len(currencies):  # first movement of some account: create, then lock all in id order
        await conn.execute(
            _CREATE_MANY,
            [u for u, _ in users] + [None] * len(currencies),
            ["AVAILABLE"] * len(users) + ["DEPOSITS"] * len(currencies),
            [c for _, c in users] + currencies,
        )
        rows = await conn.fetch(_LOCK_MANY, *lock_args)
    accounts = {(r["owner_id"], r["currency"]): r["id"] for r in rows}
    txns, accs, curs, amounts = [], [], [], []
    deltas: dict[uuid.UUID, Decimal] = {}
    for user_id, amount, currency, reference, _ in todo:
        for acc, m in ((accounts[(None, currency)], -amount), (accounts[(user_id, currency)], amount)):
            txns.append(txn_ids[reference])
            accs.append(acc)
            curs.append(currency)
            amounts.append(m)
            deltas[acc] = deltas.get(acc, Decimal(0)) + m
    await conn.execute(_WRITE_MANY, txns, accs, curs, amounts, list(deltas), list(deltas.values()))
    return posted


# --- movements inside a caller's statement (placeOrder's hot path: resolvers/trading/orders.py) ---
# Every movement of one currency as CTEs of the caller's statement (after its own, behind a comma), so the cash moves
# in the same round trip as the rows it pays for. The same rules as `post`: each reference recorded once (a movement
# whose reference was posted before writes nothing), the touched accounts locked in id order, all entries in one
# INSERT (the balance trigger checks each transaction), balances from the aggregated deltas of what was written.
# A user account taken below zero fails the statement on the accounts' CHECK constraint (`refusal` maps it to
# `post`'s Conflict); the accounts must exist (`ensure_accounts` first), else the balance trigger refuses the
# movement that misses a leg.
_MOVEMENTS = """
     lx AS (INSERT INTO ledger_transactions (id, kind, reference, details)
            SELECT i, k, r, d::jsonb FROM unnest({p1}::uuid[], {p2}::text[], {p3}::text[], {p4}::text[]) AS u(i, k, r, d)
            ON CONFLICT (reference) DO NOTHING RETURNING id),
     lk AS (SELECT a.id, a.owner_id, a.kind FROM ledger_accounts a
            WHERE a.currency = {p0}::varchar
              AND ((a.owner_id, a.kind) IN (SELECT * FROM unnest({p9}::uuid[], {p10}::ledger_account_kind[]))
                   OR (a.owner_id IS NULL AND a.kind = ANY({p11}::ledger_account_kind[])))
            ORDER BY a.id FOR UPDATE OF a),
     le AS (INSERT INTO ledger_entries (transaction_id, account_id, currency, amount)
            SELECT g.txn, lk.id, {p0}::varchar, g.amount
            FROM unnest({p5}::uuid[], {p6}::uuid[], {p7}::ledger_account_kind[], {p8}::numeric[])
                 WITH ORDINALITY AS g(txn, owner, kind, amount, n)
            JOIN lx ON lx.id = g.txn
            JOIN lk ON lk.owner_id IS NOT DISTINCT FROM g.owner AND lk.kind = g.kind
            ORDER BY g.n RETURNING account_id, amount),
     lb AS (UPDATE ledger_accounts a SET balance = a.balance + d.delta
            FROM (SELECT account_id, sum(amount) AS delta FROM le GROUP BY account_id) d WHERE a.id = d.account_id)"""
MOVEMENT_PARAMS = 12


@dataclass(frozen=True)
class Movement:
    kind: str
    reference: str
    legs: list[tuple[AccountRef, Decimal]]
    details: dict[str, Any] | None = None


def movements_cte(first: int) -> str:
    """_MOVEMENTS with its parameters numbered from ${first} (MOVEMENT_PARAMS of them: `movements_params`)."""
    return _MOVEMENTS.format(**{f"p{i}": f"${first + i}" for i in range(MOVEMENT_PARAMS)})


def movements_params(currency: str, movements: list[Movement]) -> tuple[Any, ...]:
    """The parameters of `movements_cte` for balanced movements in `currency`."""
    keys: list[tuple[uuid.UUID | None, str]] = []
    txns, owners, kinds, amounts = [], [], [], []
    ids = [new_id() for _ in movements]
    for txn, m in zip(ids, movements):
        if sum((amount for _, amount in m.legs), Decimal(0)) != 0:
            raise ValueError(f"ledger movement {m.reference} does not balance")
        for ref, amount in m.legs:
            key = _key(ref)
            keys.append(key)
            txns.append(txn)
            owners.append(key[0])
            kinds.append(key[1])
            amounts.append(amount)
    users, platform, _ = _lock_args(currency, keys)
    return (
        currency,
        ids,
        [m.kind for m in movements],
        [m.reference for m in movements],
        [json.dumps(m.details) if m.details else "{}" for m in movements],
        txns,
        owners,
        kinds,
        amounts,
        [u for u, _ in users],
        [k for _, k in users],
        platform,
    )


# (currency, (owner, kind)) of accounts known to exist committed (accounts are never deleted). Not
# `_existing_accounts`, which may hold an account created in a transaction that then rolled back (`post` re-creates
# what it does not find; a statement carrying `movements_cte` could not).
_committed_accounts: set[tuple[str, str, tuple[uuid.UUID | None, str]]] = set()  # (database, currency, key)
_ENSURED = "rwa.ledger.ensured"  # session.info: accounts made sure of in the current transaction (see begin_accounts)


def _database(session: AsyncSession) -> str:
    return str(session.bind.url.database) if isinstance(session.bind, AsyncEngine) else ""


def begin_accounts(session: AsyncSession) -> None:
    """A transaction that will carry `movements_cte` starts: from here `ensure_accounts` remembers what it made sure
    of, until `accounts_committed` (after the commit) or the next `begin_accounts` (a retry after a rollback)."""
    session.info[_ENSURED] = set()


def accounts_committed(session: AsyncSession) -> None:
    """The transaction begun with `begin_accounts` committed: its accounts exist for every later one. Only for a
    session bound to an engine (one bound to a connection may be inside an outer transaction that rolls back)."""
    ensured = session.info.pop(_ENSURED, None)
    if ensured and isinstance(session.bind, AsyncEngine):
        if len(_committed_accounts) > 100_000:
            _committed_accounts.clear()
        db = _database(session)
        _committed_accounts.update((db, currency, key) for currency, key in ensured)


async def ensure_accounts(session: AsyncSession, currency: str, refs: list[AccountRef]) -> None:
    """Make sure the accounts exist for `movements_cte`: nothing for those seen committed or already made sure of in
    this transaction, else one statement (it waits for another transaction's uncommitted creation of the same
    account to end). Call before the statement that locks accounts (as `post` creates before it locks)."""
    ensured: set[tuple[str, tuple[uuid.UUID | None, str]]] | None = session.info.get(_ENSURED)
    db = _database(session)
    keys = {(currency, _key(ref)) for ref in refs}
    missing = [k for c, k in keys - (ensured or set()) if (db, c, k) not in _committed_accounts]
    if missing:
        await (await pg(session)).execute(_CREATE_ACCOUNTS, currency, [u for u, _ in missing], [k for _, k in missing])
    if ensured is not None:
        ensured.update(keys)


def refusal(exc: BaseException, currency: str) -> Conflict | None:
    """`post`'s Conflict for a statement that failed because a movement took a user account below zero."""
    if getattr(exc, "constraint_name", None) == "ck_ledger_accounts_user_balance_not_negative":
        return Conflict(f"insufficient {currency} balance", reason="INSUFFICIENT_FUNDS")
    return None


def reserve_movement(user_id: uuid.UUID, amount: Decimal, reference: str) -> Movement:
    """Hold free cash for an open buy order (AVAILABLE -> RESERVED)."""
    legs: list[tuple[AccountRef, Decimal]] = [
        (UserAccount(user_id), -amount),
        (UserAccount(user_id, AccountKind.RESERVED), amount),
    ]
    return Movement("RESERVE", reference, legs)


def release_movement(user_id: uuid.UUID, amount: Decimal, reference: str) -> Movement:
    """Give held cash back (RESERVED -> AVAILABLE), e.g. when an order is canceled."""
    legs: list[tuple[AccountRef, Decimal]] = [
        (UserAccount(user_id, AccountKind.RESERVED), -amount),
        (UserAccount(user_id), amount),
    ]
    return Movement("RELEASE", reference, legs)


async def reserve(session: AsyncSession, user_id: uuid.UUID, amount: Decimal, currency: str, reference: str) -> bool:
    m = reserve_movement(user_id, amount, reference)
    return await post(session, kind=m.kind, reference=reference, currency=currency, legs=m.legs)


async def release(session: AsyncSession, user_id: uuid.UUID, amount: Decimal, currency: str, reference: str) -> bool:
    m = release_movement(user_id, amount, reference)
    return await post(session, kind=m.kind, reference=reference, currency=currency, legs=m.legs)


async def balances(session: AsyncSession, user_id: uuid.UUID) -> list[Balance]:
    rows = (
        await session.execute(
            select(LedgerAccount.currency, LedgerAccount.kind, LedgerAccount.balance).where(
                LedgerAccount.owner_id == user_id
            )
        )
    ).all()
    out: dict[str, dict[AccountKind, Decimal]] = {}
    for currency, kind, balance in rows:
        out.setdefault(currency, {})[kind] = balance
    return [
        Balance(c, v.get(AccountKind.AVAILABLE, Decimal(0)), v.get(AccountKind.RESERVED, Decimal(0)))
        for c, v in sorted(out.items())
    ]


async def total_by_currency(session: AsyncSession) -> dict[str, Decimal]:
    """Sum over every account per currency: zero at all times (the invariant tests assert)."""
    from sqlalchemy import func

    rows = (
        await session.execute(
            select(LedgerAccount.currency, func.sum(LedgerAccount.balance)).group_by(LedgerAccount.currency)
        )
    ).all()
    return {c: Decimal(t) for c, t in rows}
