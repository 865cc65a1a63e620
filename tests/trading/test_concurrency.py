"""Many clients through two API processes placing and canceling at once on one market: no overfill, no fill after
a cancel, quantity and cash conserved, reservations consistent, the book never crossed."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select, text

from core.jwt_keys import KeyRing
from models.ledger import AccountKind, LedgerAccount
from models.trading import OPEN_STATUSES, Order, OrderStatus, SettlementInstruction, Side, Trade
from resolvers import ledger
from tests.trading.factories import make_market, make_trader
from tests.trading.live import api_servers, committed_sessions, graphql

CLIENTS = 8
ORDERS_PER_CLIENT = 40
START_CASH = Decimal("100000")
START_TOKENS = Decimal("1000")
PLACE = (
    "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status filledQuantity } errors { code } } }"
)
CANCEL = "mutation($id: UUID!) { cancelOrder(id: $id) { order { id status filledQuantity } errors { code } } }"


@pytest.fixture(scope="module")
def database_url(module_database_url: str) -> str:
    """The API processes and sessions here commit: their rows stay in this module's own database."""
    return module_database_url


async def client_run(
    n: int,
    urls: list[str],
    market_id: str,
    token: str,
    canceled: dict[str, Decimal],
    errors: list[str],
    placed: list[str],
) -> None:
    rng = random.Random(n)
    mine: list[str] = []
    async with httpx.AsyncClient(timeout=60) as http:
        for i in range(ORDERS_PER_CLIENT):
            url = urls[(n + i) % len(urls)]
            if mine and rng.random() < 0.3:
                oid = mine.pop(rng.randrange(len(mine)))
                res = await graphql(http, url, CANCEL, {"id": oid}, token)
                if res.get("errors") or res["data"]["cancelOrder"]["errors"]:
                    failed = res.get("errors") or res["data"]["cancelOrder"]["errors"]
                    if failed[0].get("code") != "INVALID_STATE":  # already filled: fine
                        errors.append(f"cancel: {failed}")
                else:
                    canceled[oid] = Decimal(res["data"]["cancelOrder"]["order"]["filledQuantity"])
                continue
            side = rng.choice(["BUY", "SELL"])
            price = Decimal(rng.randint(95, 105)) / 10
            kind = rng.choices(["GTC", "IOC", "FOK", "MARKET"], [6, 2, 1, 1])[0]
            inp = {
                "marketId": market_id,
                "side": side,
                "quantity": str(rng.randint(1, 8)),
                "price": str(price),
                "type": "MARKET" if kind == "MARKET" else "LIMIT",
                "clientOrderId": f"c{n}-{i}",
            }
            if kind in ("IOC", "FOK"):
                inp["timeInForce"] = kind
            res = await graphql(http, url, PLACE, {"i": inp}, token)
            if res.get("errors") or res["data"]["placeOrder"]["errors"]:
                errors.append(f"place: {res.get('errors') or res['data']['placeOrder']['errors']}")
                continue
            order = res["data"]["placeOrder"]["order"]
            placed.append(order["id"])
            if order["status"] in ("NEW", "PARTIALLY_FILLED"):
                mine.append(order["id"])
            if i == 5:  # a retry with the same clientOrderId returns the same order
                again = await graphql(http, urls[0], PLACE, {"i": inp}, token)
                if again["data"]["placeOrder"]["order"]["id"] != order["id"]:
                    errors.append("clientOrderId retry created a second order")


async def test_two_processes_many_clients_invariants(database_url, redis_url, settings, tmp_path):  # type: ignore[no-untyped-def]
    keyring = KeyRing.from_settings(settings)
    async with committed_sessions(database_url) as sf:
        m = await make_market(sf, tick="0.1", lot="1", maker_bps=10, taker_bps=25)
        traders = [await make_trader(sf, m, cash=START_CASH, tokens=START_TOKENS) for _ in range(CLIENTS)]
        tokens = [keyring.issue(t.user_id, ["INVESTOR"])[0] for t in traders]
        canceled: dict[str, Decimal] = {}
        errors: list[str] = []
        placed: list[str] = []
        with api_servers(database_url, redis_url, n=2, data_dir=str(tmp_path)) as servers:
            await asyncio.wait_for(
                asyncio.gather(
                    *[
                        client_run(n, servers.urls, str(m.market_id), tokens[n], canceled, errors, placed)
                        for n in range(CLIENTS)
                    ]
                ),
                timeout=300,
            )
        assert not errors, errors[:5]

        async with sf() as s:
            orders = (await s.execute(select(Order).where(Order.market_id == m.market_id))).scalars().all()
            trades = (await s.execute(select(Trade).where(Trade.market_id == m.market_id))).scalars().all()
            assert {str(o.id) for o in orders} == set(placed)  # one order per placement, retries included
            assert len(trades) > 20, "the random flow should cross often"
            per_order: dict = {}
            for t in trades:
                per_order[t.maker_order_id] = per_order.get(t.maker_order_id, 0) + t.quantity
                per_order[t.taker_order_id] = per_order.get(t.taker_order_id, 0) + t.quantity
            for o in orders:
                assert o.filled_quantity <= o.quantity, f"overfilled {o.id}"
                assert per_order.get(o.id, 0) == o.filled_quantity, f"quantity not conserved for {o.id}"
                assert (o.status is OrderStatus.FILLED) == (o.filled_quantity == o.quantity)
                if o.status not in OPEN_STATUSES:
                    assert o.reserved_cash == 0
                if str(o.id) in canceled:
                    assert o.status is OrderStatus.CANCELED
                    assert o.filled_quantity == canceled[str(o.id)], f"filled after cancel {o.id}"
            # the book is never crossed
            bid = max((o.price for o in orders if o.status in OPEN_STATUSES and o.side is Side.BUY), default=None)
            ask = min((o.price for o in orders if o.status in OPEN_STATUSES and o.side is Side.SELL), default=None)
            assert bid is None or ask is None or bid < ask
            # cash: the ledger sums to zero; each user's RESERVED equals their open buys' reservations
            assert (await ledger.total_by_currency(s))[m.quote] == 0
            for trader in traders:
                bal = {b.currency: b for b in await ledger.balances(s, trader.user_id)}[m.quote]
                held = sum((o.reserved_cash for o in orders if o.user_id == trader.user_id), Decimal(0))
                assert bal.reserved == held
                bought = sum(
                    (
                        t.price * t.quantity + (t.taker_fee if t.taker_side is Side.BUY else t.maker_fee)
                        for t in trades
                        if t.buyer_id == trader.user_id
                    ),
                    Decimal(0),
                )
                sold = sum(
                    (
                        t.price * t.quantity - (t.taker_fee if t.taker_side is Side.SELL else t.maker_fee)
                        for t in trades
                        if t.seller_id == trader.user_id
                    ),
                    Decimal(0),
                )
                assert bal.total == START_CASH - bought + sold
                for o in orders:
                    if o.user_id == trader.user_id and o.status in OPEN_STATUSES and o.side is Side.BUY:
                        assert o.reserved_cash >= (o.quantity - o.filled_quantity) * o.price
            fees = sum((t.maker_fee + t.taker_fee for t in trades), Decimal(0))
            platform_fees = (
                await s.execute(
                    select(LedgerAccount.balance).where(
                        LedgerAccount.owner_id.is_(None),
                        LedgerAccount.kind == AccountKind.FEES,
                        LedgerAccount.currency == m.quote,
                    )
                )
            ).scalar_one()
            assert platform_fees == fees
            # tokens: one instruction per trade, seller wallet -> buyer wallet, in raw units
            amount = (
                await s.execute(
                    select(func.coalesce(func.sum(SettlementInstruction.amount), 0)).where(
                        SettlementInstruction.trade_id.in_([t.id for t in trades])
                    )
                )
            ).scalar_one()
            assert amount == sum(t.quantity for t in trades) * 10**m.decimals
            seq = (
                await s.execute(text("SELECT book_sequence FROM markets WHERE id = :m"), {"m": m.market_id})
            ).scalar_one()
            assert seq > 0
