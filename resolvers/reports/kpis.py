"""Platform KPIs for dashboards, cheap enough to poll: a snapshot computed by a job, read by every poll.

The aggregates (`compute_kpis`, a few grouped scans) cost what the tables hold: assets by status and tokenized value
read every asset row (index-only on ix_assets_status_*), trading per window reads the last 30 days of trades per
market (ix_trades_market_created), payments the last 30 days of payments (ix_payments_created). That is too much to
run on every poll of every dashboard, so the worker (`refresh_platform_kpis`, every REFRESH_S) stores the result as
one JSON value in Redis and `platformKpis` reads it: one GET and a JSON decode per poll, whatever the table sizes
(the README gives the numbers). A snapshot older than MAX_AGE_S (no worker running) or missing is computed by the
poll that finds it so and stored for the next ones.

Numbers: assets by status (every status, zeros included); tokenized value = the latest valuations of assets that are
tokenized and not retired (ACTIVE, SUSPENDED, REDEEMING), per valuation currency; trading volume, trade count and
fees per quote currency over the last 24 h, 7 d and 30 d (FAILED trades excluded: their cash was reversed); fees
earned = the platform FEES ledger accounts' balances (all time, trading and issuance fees); payments created in the
last 30 days by state and currency (count and intended amount).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.redis import Keys
from models.assets import AssetStatus
from models.identity import Role
from resolvers.raw_sql import pg
from resolvers.viewer import Viewer

REFRESH_S = 30.0
MAX_AGE_S = 300.0
WINDOWS = (("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))
PAYMENTS_WINDOW = timedelta(days=30)
TOKENIZED_STATUSES = ("ACTIVE", "SUSPENDED", "REDEEMING")
STAFF = (Role.ADMIN.value, Role.COMPLIANCE.value)


@dataclass(frozen=True, slots=True)
class StatusCount:
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class TokenizedValue:
    currency: str
    amount: Decimal
    assets: int


@dataclass(frozen=True, slots=True)
class TradingWindow:
    window: str
    currency: str
    volume: Decimal
    trades: int
    fees: Decimal


@dataclass(frozen=True, slots=True)
class FeesEarned:
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PaymentStateTotal:
    state: str
    currency: str
    count: int
    amount: Decimal


@dataclass(slots=True)
class KpiSnapshot:
    computed_at: datetime
    compute_ms: float
    assets_by_status: list[StatusCount] = field(default_factory=list)
    tokenized_value: list[TokenizedValue] = field(default_factory=list)
    trading: list[TradingWindow] = field(default_factory=list)
    fees_earned: list[FeesEarned] = field(default_factory=list)
    payments: list[PaymentStateTotal] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_encode)

    @classmethod
    def from_json(cls, raw: str | bytes) -> KpiSnapshot:
        d = json.loads(raw)
        return cls(
            computed_at=datetime.fromisoformat(d["computed_at"]),
            compute_ms=float(d["compute_ms"]),
            assets_by_status=[StatusCount(**x) for x in d["assets_by_status"]],
            tokenized_value=[
                TokenizedValue(x["currency"], Decimal(x["amount"]), x["assets"]) for x in d["tokenized_value"]
            ],
            trading=[
                TradingWindow(x["window"], x["currency"], Decimal(x["volume"]), x["trades"], Decimal(x["fees"]))
                for x in d["trading"]
            ],
            fees_earned=[FeesEarned(x["currency"], Decimal(x["amount"])) for x in d["fees_earned"]],
            payments=[
                PaymentStateTotal(x["state"], x["currency"], x["count"], Decimal(x["amount"])) for x in d["payments"]
            ],
        )

    def age_s(self, now: datetime) -> float:
        return max((now - self.computed_at).total_seconds(), 0.0)


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value))


_ASSETS = "SELECT status::text AS status, count(*) AS n FROM assets GROUP BY status"
_TOKENIZED = """
SELECT coalesce(latest_valuation_currency, currency) AS currency, sum(latest_valuation_amount) AS amount,
       count(*) AS n
FROM assets WHERE status = ANY($1::asset_status[]) GROUP BY 1 ORDER BY 1"""
# per market through its (market_id, created_at) index, then per quote currency
_TRADING = """
SELECT m.quote_currency AS currency,
       coalesce(sum(t.price * t.quantity) FILTER (WHERE t.created_at >= $2), 0) AS v24,
       count(t.created_at) FILTER (WHERE t.created_at >= $2) AS n24,
       coalesce(sum(t.maker_fee + t.taker_fee) FILTER (WHERE t.created_at >= $2), 0) AS f24,
       coalesce(sum(t.price * t.quantity) FILTER (WHERE t.created_at >= $3), 0) AS v7,
       count(t.created_at) FILTER (WHERE t.created_at >= $3) AS n7,
       coalesce(sum(t.maker_fee + t.taker_fee) FILTER (WHERE t.created_at >= $3), 0) AS f7,
       coalesce(sum(t.price * t.quantity), 0) AS v30,
       count(t.created_at) AS n30,
       coalesce(sum(t.maker_fee + t.taker_fee), 0) AS f30
FROM markets m CROSS JOIN LATERAL (
    SELECT tr.price, tr.quantity, tr.maker_fee, tr.taker_fee, tr.created_at FROM trades tr
    WHERE tr.market_id = m.id AND tr.created_at >= $4 AND tr.created_at <= $1 AND tr.settlement <> 'FAILED'
) t
GROUP BY m.quote_currency ORDER BY 1"""
_FEES = """
SELECT currency, sum(balance) AS amount FROM ledger_accounts
WHERE owner_id IS NULL AND kind = 'FEES' GROUP BY currency ORDER BY currency"""
_PAYMENTS = """
SELECT state::text AS state, currency, count(*) AS n, sum(amount) AS amount FROM payments
WHERE created_at >= $1 AND created_at <= $2 GROUP BY 1, 2 ORDER BY 1, 2"""


async def compute_kpis(session: AsyncSession, now: datetime | None = None) -> KpiSnapshot:
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    conn = await pg(session)
    by_status = {r["status"]: int(r["n"]) for r in await conn.fetch(_ASSETS)}
    snap = KpiSnapshot(
        computed_at=now,
        compute_ms=0.0,
        assets_by_status=[StatusCount(s.value, by_status.get(s.value, 0)) for s in AssetStatus],
    )
    snap.tokenized_value = [
        TokenizedValue(r["currency"], r["amount"], int(r["n"]))
        for r in await conn.fetch(_TOKENIZED, list(TOKENIZED_STATUSES))
    ]
    (_, d24), (_, d7), (_, d30) = WINDOWS
    for r in await conn.fetch(_TRADING, now, now - d24, now - d7, now - d30):
        for window, suffix in (("24h", "24"), ("7d", "7"), ("30d", "30")):
            snap.trading.append(
                TradingWindow(window, r["currency"], r["v" + suffix], int(r["n" + suffix]), r["f" + suffix])
            )
    snap.fees_earned = [FeesEarned(r["currency"], r["amount"]) for r in await conn.fetch(_FEES)]
    snap.payments = [
        PaymentStateTotal(r["state"], r["currency"], int(r["n"]), r["amount"])
        for r in await conn.fetch(_PAYMENTS, now - PAYMENTS_WINDOW, now)
    ]
    snap.compute_ms = round((time.perf_counter() - started) * 1000, 3)
    return snap


def snapshot_key(keys: Keys) -> str:
    return keys("reports", "kpis")


async def refresh_kpis(session: AsyncSession, redis: Redis, keys: Keys, now: datetime | None = None) -> KpiSnapshot:
    """Compute and store the snapshot (the job's work; idempotent: a rerun overwrites it with fresher numbers)."""
    snap = await compute_kpis(session, now)
    await redis.set(snapshot_key(keys), snap.to_json())
    return snap


async def platform_kpis(
    session: AsyncSession, redis: Redis, keys: Keys, viewer: Viewer, now: datetime | None = None
) -> KpiSnapshot:
    """The stored snapshot; computed here only when it is missing or older than MAX_AGE_S."""
    viewer.require_role(*STAFF)
    now = now or datetime.now(UTC)
    raw = await redis.get(snapshot_key(keys))
    if raw is not None:
        snap = KpiSnapshot.from_json(raw)
        if snap.age_s(now) <= MAX_AGE_S:
            return snap
    return await refresh_kpis(session, redis, keys, now)
