"""One investor's statement for a period [from, to): cash movements, trades, fees, token holdings at both ends.

Who may read one: the investor (their own) and ADMIN/COMPLIANCE (anyone's); everyone else FORBIDDEN. The full name
(from the KYC case) appears for the investor and for COMPLIANCE, signed in interactively (resolvers/identity/kyc.py).

- Cash: the ledger seen from the investor: per ledger transaction and currency, the net of the entries on the
  investor's own accounts (AVAILABLE + RESERVED), so moving cash between the two (an order reserving it) is not a
  movement and a trade is one line (notional and fee together). Opening = the current balance minus everything
  posted since `from`; closing = opening + the period's movements; both read in one statement (one snapshot), so
  opening + movements = closing whatever is posted meanwhile. Cost ~ the investor's ledger entries since `from`.
- Trades: as buyer or seller (indexes on buyer_id, seller_id), with the investor's own fee (maker or taker fee by
  which side took). FAILED trades are listed but count in no total (their cash was reversed).
- Fees: per currency, the investor's trade fees in the period (FAILED trades excluded).
- Holdings: per security token, the balance of the investor's linked wallets before `from` and before `to`, summed
  from indexed transfers by block time. Only tokens a wallet ever held are read (a holdings primary-key probe per
  security token and wallet; the indexer writes a holdings row for every address a transfer touches), then their
  transfers through ix_token_transfers_from/_to (per token and wallet).
A period is at most MAX_PERIOD_DAYS long.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from core.encryption import FieldCipher
from core.errors import BadUserInput, Forbidden, NotFound
from models.identity import KycCase, Role
from resolvers.raw_sql import pg
from resolvers.reports.cap_table import interactive, units_to_amount
from resolvers.trading.settlement import notional_of
from resolvers.viewer import Viewer

MAX_PERIOD_DAYS = 400
STAFF = (Role.ADMIN.value, Role.COMPLIANCE.value)


@dataclass(frozen=True, slots=True)
class CashMovement:
    at: datetime
    currency: str
    amount: Decimal  # + into the investor's cash, - out of it
    balance_after: Decimal
    kind: str  # the ledger transaction's kind: CREDIT, SETTLE, WITHDRAW...
    reference: str


@dataclass(frozen=True, slots=True)
class CashSummary:
    currency: str
    opening: Decimal
    credits: Decimal
    debits: Decimal  # negative or zero
    closing: Decimal


@dataclass(frozen=True, slots=True)
class StatementTrade:
    at: datetime
    trade_id: uuid.UUID
    market: str
    currency: str
    side: str  # BUY or SELL, from the investor's side
    quantity: Decimal
    price: Decimal
    notional: Decimal
    fee: Decimal
    settlement: str


@dataclass(frozen=True, slots=True)
class FeeTotal:
    currency: str
    amount: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class HoldingChange:
    chain_id: int
    token: str
    symbol: str
    decimals: int
    start_units: int
    end_units: int

    @property
    def start(self) -> Decimal:
        return units_to_amount(self.start_units, self.decimals)

    @property
    def end(self) -> Decimal:
        return units_to_amount(self.end_units, self.decimals)


@dataclass(slots=True)
class Statement:
    user_id: uuid.UUID
    email: str
    full_name: str | None
    period_from: datetime
    period_to: datetime
    generated_at: datetime
    wallets: list[str]
    cash: list[CashSummary] = field(default_factory=list)
    movements: list[CashMovement] = field(default_factory=list)
    trades: list[StatementTrade] = field(default_factory=list)
    fees: list[FeeTotal] = field(default_factory=list)
    holdings: list[HoldingChange] = field(default_factory=list)


# --- statements ----------------------------------------------------------------------------------------

_USER = """
SELECT u.id, u.email, k.id AS case_id, k.personal_data,
       coalesce((SELECT array_agg(w.address ORDER BY w.address) FROM wallets w WHERE w.user_id = u.id), '{}') AS wallets
FROM users u LEFT JOIN kyc_cases k ON k.user_id = u.id WHERE u.id = $1"""

# One snapshot: the current balances (marker row: txn NULL) and every net movement since `from`.
_CASH = """
WITH acc AS (SELECT id, currency, balance FROM ledger_accounts
             WHERE owner_id = $1 AND kind IN ('AVAILABLE', 'RESERVED'))
SELECT NULL::uuid AS txn, acc.currency, sum(acc.balance) AS amount, NULL::timestamptz AS at, NULL AS kind,
       NULL AS reference, NULL::bigint AS seq
FROM acc GROUP BY acc.currency
UNION ALL
SELECT t.id, e.currency, sum(e.amount), min(e.created_at), t.kind, t.reference, min(e.id)
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.account_id IN (SELECT id FROM acc) AND e.created_at >= $2
GROUP BY t.id, e.currency, t.kind, t.reference
HAVING sum(e.amount) <> 0"""

_TRADES = """
SELECT tr.id, tr.created_at, m.symbol, m.quote_currency, tr.buyer_id = $1 AS bought, tr.taker_side::text AS taker_side,
       tr.price, tr.quantity, tr.maker_fee, tr.taker_fee, tr.settlement::text AS settlement
FROM trades tr JOIN markets m ON m.id = tr.market_id
WHERE (tr.buyer_id = $1 OR tr.seller_id = $1) AND tr.created_at >= $2 AND tr.created_at < $3
ORDER BY tr.created_at, tr.seq"""

# Per security token, the wallets' balance before `from` and before `to` (by block time).
_HOLDINGS = """
SELECT tk.chain_id, tk.address, tk.symbol, tk.decimals, x.start_units, x.end_units
FROM tokens tk CROSS JOIN LATERAL (
    SELECT coalesce(sum(m.delta) FILTER (WHERE m.block_time < $2), 0) AS start_units,
           coalesce(sum(m.delta), 0) AS end_units
    FROM (SELECT t.value AS delta, t.block_time FROM token_transfers t
          WHERE t.chain_id = tk.chain_id AND t.token_address = tk.address AND t.to_address = ANY($1::varchar[])
            AND t.block_time < $3
          UNION ALL
          SELECT -t.value, t.block_time FROM token_transfers t
          WHERE t.chain_id = tk.chain_id AND t.token_address = tk.address AND t.from_address = ANY($1::varchar[])
            AND t.block_time < $3) m
) x
WHERE tk.kind = 'SECURITY' AND (x.start_units <> 0 OR x.end_units <> 0)
  AND EXISTS (SELECT 1 FROM holdings h WHERE h.chain_id = tk.chain_id AND h.token_address = tk.address
              AND h.holder = ANY($1::varchar[]))
ORDER BY tk.chain_id, tk.symbol, tk.address"""


def check_period(period_from: datetime, period_to: datetime) -> None:
    for name, value in (("from", period_from), ("to", period_to)):
        if value.tzinfo is None:
            raise BadUserInput(f"{name} needs a time zone offset", field=name)
    if period_from >= period_to:
        raise BadUserInput("from must be before to", field="from")
    if period_to - period_from > timedelta(days=MAX_PERIOD_DAYS):
        raise BadUserInput(f"a statement covers at most {MAX_PERIOD_DAYS} days", field="to")


def authorize(viewer: Viewer, user_id: uuid.UUID | None) -> uuid.UUID:
    """The investor whose statement it is: the caller's own, or anyone's for ADMIN/COMPLIANCE."""
    caller = viewer.require_user()
    if user_id is None or user_id == caller:
        return caller
    if not viewer.has_role(*STAFF):
        raise Forbidden("only ADMIN and COMPLIANCE may read another investor's statement")
    return user_id


async def _name(
    session: AsyncSession,
    viewer: Viewer,
    user_id: uuid.UUID,
    cipher: FieldCipher | None,
    case_id: uuid.UUID | None,
    personal_data: bytes | None,
) -> str | None:
    """The KYC full name for the investor and COMPLIANCE, signed in interactively; None when erased or unreadable."""
    if cipher is None or case_id is None or personal_data is None or not interactive(viewer):
        return None
    if viewer.user_id != user_id and not viewer.has_role(Role.COMPLIANCE.value):
        return None
    from resolvers.identity.kyc import read_details

    try:
        details = await read_details(session, cipher, KycCase(id=case_id, user_id=user_id, personal_data=personal_data))
    except Exception:  # a key this process lacks: the statement goes on without it
        return None
    return details.full_name if details is not None else None


def _fee_of(bought: bool, taker_side: str, maker_fee: Decimal, taker_fee: Decimal) -> Decimal:
    took = (taker_side == "BUY") == bought
    return taker_fee if took else maker_fee


async def statement(
    session: AsyncSession,
    viewer: Viewer,
    *,
    period_from: datetime,
    period_to: datetime,
    user_id: uuid.UUID | None = None,
    cipher: FieldCipher | None = None,
    now: datetime | None = None,
) -> Statement:
    target = authorize(viewer, user_id)
    check_period(period_from, period_to)
    conn = await pg(session)
    user = await conn.fetchrow(_USER, target)
    if user is None:
        raise NotFound("no such user")
    out = Statement(
        user_id=target,
        email=user["email"],
        full_name=await _name(session, viewer, target, cipher, user["case_id"], user["personal_data"]),
        period_from=period_from,
        period_to=period_to,
        generated_at=now or datetime.now(UTC),
        wallets=list(user["wallets"]),
    )
    _cash(out, await conn.fetch(_CASH, target, period_from))
    for r in await conn.fetch(_TRADES, target, period_from, period_to):
        fee = _fee_of(r["bought"], r["taker_side"], r["maker_fee"], r["taker_fee"])
        out.trades.append(
            StatementTrade(
                at=r["created_at"],
                trade_id=r["id"],
                market=r["symbol"],
                currency=r["quote_currency"],
                side="BUY" if r["bought"] else "SELL",
                quantity=r["quantity"],
                price=r["price"],
                notional=notional_of(r["price"], r["quantity"]),
                fee=fee,
                settlement=r["settlement"],
            )
        )
    fees: dict[str, list[Decimal]] = defaultdict(list)
    for t in out.trades:
        if t.settlement != "FAILED":
            fees[t.currency].append(t.fee)
    out.fees = [FeeTotal(c, sum(v, Decimal(0)), len(v)) for c, v in sorted(fees.items())]
    if out.wallets:
        out.holdings = [
            HoldingChange(
                r["chain_id"], r["address"], r["symbol"], r["decimals"], int(r["start_units"]), int(r["end_units"])
            )
            for r in await conn.fetch(_HOLDINGS, out.wallets, period_from, period_to)
        ]
    return out


def _cash(out: Statement, rows: list) -> None:
    now_balance: dict[str, Decimal] = defaultdict(Decimal)
    since: dict[str, Decimal] = defaultdict(Decimal)
    in_period = []
    for r in rows:
        if r["txn"] is None:
            now_balance[r["currency"]] += r["amount"]
            continue
        since[r["currency"]] += r["amount"]
        if r["at"] < out.period_to:
            in_period.append(r)
    in_period.sort(key=lambda r: (r["at"], r["seq"]))  # entries' ids: posting order within one instant
    opening = {c: now_balance[c] - since[c] for c in set(now_balance) | set(since)}
    running = dict(opening)
    credits: dict[str, Decimal] = defaultdict(Decimal)
    debits: dict[str, Decimal] = defaultdict(Decimal)
    for r in in_period:
        c, amount = r["currency"], r["amount"]
        running[c] += amount
        (credits if amount > 0 else debits)[c] += amount
        out.movements.append(
            CashMovement(
                at=r["at"],
                currency=c,
                amount=amount,
                balance_after=running[c],
                kind=r["kind"],
                reference=r["reference"],
            )
        )
    out.cash = [
        CashSummary(c, opening[c], credits[c], debits[c], running[c])
        for c in sorted(opening)
        if opening[c] or running[c] or credits[c] or debits[c]
    ]
