"""Trading's Relay nodes and closed sets (issue 14 item 4): `node(id)` returns a Trade to whoever may read market
data (anyone, unless MARKET_DATA_REQUIRES_LOGIN) and null otherwise, like `trades`; `myTrades` carries the same
trade id and per-market sequence as `trades`; an order's reason and a market's halt reason are enums whose values
are exactly the codes the trading code writes."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import httpx

from core.settings import Settings
from models.trading import HaltReason, OrderReason
from server.app import create_app
from tests.fixtures.db import settings_values
from tests.trading.factories import make_market, make_trader

REPO = Path(__file__).resolve().parents[2]
PLACE = "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id status reason } errors { code } } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Trade { sequence price quantity takerSide } } }"


def order(m, side: str, qty: str, price: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"i": {"marketId": str(m.market_id), "side": side, "type": "LIMIT", "quantity": qty, "price": price}}


async def test_a_trade_is_a_node_visible_like_market_data(gql, make_user, session_factory, services) -> None:  # type: ignore[no-untyped-def]
    seller, buyer = await make_user(), await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=seller.id, tokens="10")
    await make_trader(session_factory, m, user_id=buyer.id, cash="100")
    for _ in range(2):  # two trades: sequences 1 and 2
        await gql(PLACE, order(m, "SELL", "1", "2.00"), token=seller.token)
        bought = await gql(PLACE, order(m, "BUY", "1", "2.00"), token=buyer.token)
        assert gql.payload(bought, "placeOrder", "order")["status"] == "FILLED"
    public = await gql(
        "query($m: UUID!) { trades(marketId: $m, first: 1) { edges { node { id sequence } } } }",
        {"m": str(m.market_id)},
    )
    [edge] = public["data"]["trades"]["edges"]
    trade_id = edge["node"]["id"]
    assert edge["node"]["sequence"] == 2
    expected = {"__typename": "Trade", "id": trade_id, "sequence": 2, "price": "2", "quantity": "1", "takerSide": "BUY"}
    assert (await gql(NODE, {"id": trade_id}))["data"]["node"] == expected  # anonymous: public market data
    assert (await gql(NODE, {"id": trade_id}, token=buyer.token))["data"]["node"] == expected
    mine = await gql("{ myTrades(first: 1) { edges { node { id sequence side } } } }", token=seller.token)
    assert mine["data"]["myTrades"]["edges"] == [{"node": {"id": trade_id, "sequence": 2, "side": "SELL"}}]

    settings = Settings(**{**settings_values(services.settings), "MARKET_DATA_REQUIRES_LOGIN": True})  # type: ignore[arg-type]
    app = create_app(settings, dataclasses.replace(services, settings=settings))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        query = {"query": "query($ids: [ID!]!) { nodes(ids: $ids) { __typename } }"}
        ids = {"ids": [trade_id, str(m.market_id)]}
        anonymous = (await client.post("/graphql", json={**query, "variables": ids})).json()
        assert anonymous["data"]["nodes"] == [None, None], anonymous
        signed = await client.post(
            "/graphql", json={**query, "variables": ids}, headers={"Authorization": f"Bearer {seller.token}"}
        )
        assert signed.json()["data"]["nodes"] == [{"__typename": "Trade"}, {"__typename": "Market"}]


async def test_enum_reasons_come_back_as_their_codes(gql, make_user, session_factory) -> None:  # type: ignore[no-untyped-def]
    user = await make_user()
    m = await make_market(session_factory)
    await make_trader(session_factory, m, user_id=user.id, cash="0")
    refused = await gql(PLACE, order(m, "BUY", "1", "2.00"), token=user.token)
    assert gql.payload(refused, "placeOrder", "order")["status"] == "REJECTED"
    assert refused["data"]["placeOrder"]["order"]["reason"] == "INSUFFICIENT_CASH"
    types = await gql(
        '{ order: __type(name: "Order") { fields { name type { name } } } '
        'limits: __type(name: "MarketRiskLimits") { fields { name type { name } } } '
        'mine: __type(name: "MyTrade") { fields { name type { name } } } }'
    )

    def type_of(kind: str, field: str) -> str:
        return next(f["type"]["name"] for f in types["data"][kind]["fields"] if f["name"] == field)

    assert type_of("order", "reason") == "OrderReason"
    assert type_of("limits", "haltReason") == "HaltReason"
    assert type_of("mine", "settlementOperationState") == "OperationState"


def _written_reasons() -> set[str]:
    """Every constant the trading code stores as an order's reason: gate and risk verdicts (`GateResult("X")`,
    `Verdict("X")`, `return "X" if ...`), `reason="X"` given to the cancel helpers (also from schema/trading.py),
    `x.reason = "X"` in matching, and the halt reasons' module constants."""
    found: set[str] = set()
    trading = REPO / "resolvers" / "trading"
    sources = [trading / f"{name}.py" for name in ("gate", "risk", "matching", "expiry", "orders", "risk_admin")]
    for path in [*sources, REPO / "schema" / "trading.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            values: list[ast.AST] = []
            if isinstance(node, ast.Call):
                callee = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if callee in ("GateResult", "Verdict") and node.args:
                    values.append(node.args[0])
                if callee not in ("BadUserInput", "Conflict", "NotFound", "ClientOrderIdReused"):
                    values += [kw.value for kw in node.keywords if kw.arg == "reason"]
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    targets = target.elts if isinstance(target, ast.Tuple) else [target]
                    value = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value] * len(targets)
                    for t, v in zip(targets, value, strict=False):
                        if isinstance(t, ast.Attribute) and t.attr == "reason":
                            values.append(v)
                        if isinstance(t, ast.Name) and t.id in ("CIRCUIT_BREAKER", "KILL_SWITCH"):
                            values.append(v)
            elif isinstance(node, ast.Return) and isinstance(node.value, ast.IfExp):
                values += [node.value.body, node.value.orelse]
            for v in values:
                for c in [v] if not isinstance(v, ast.BoolOp) else v.values:
                    if isinstance(c, ast.IfExp):
                        found.update(x.value for x in (c.body, c.orelse) if isinstance(x, ast.Constant) and x.value)
                    elif isinstance(c, ast.Constant) and isinstance(c.value, str):
                        found.add(c.value)
    return found


def test_order_reason_lists_exactly_the_codes_the_trading_code_writes() -> None:
    written = _written_reasons()
    assert {"INSUFFICIENT_CASH", "PRICE_OUTSIDE_BAND", "SELF_TRADE_PREVENTED", "GTD_EXPIRED"} <= written
    assert written == {r.value for r in OrderReason}
    assert {r.value for r in HaltReason} <= written
