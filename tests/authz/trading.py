"""Trading and market data in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"


def _m(call: str, roles: set[str] | None = None, scopes: frozenset[str] = frozenset()) -> Rule:
    doc = f"mutation {{ {call} {{ __typename }} }}"
    return Rule(doc, roles=frozenset(roles), scopes=scopes) if roles else Rule(doc, scopes=scopes)


ENTRIES = {
    # public market data (schema.permissions.public_market_data): anyone, anonymous callers rate-limited per IP
    "Query.markets": Rule("{ markets { id } }", public=True, scopes=frozenset({"market-data:read"})),
    "Query.ticker": Rule(
        f'{{ ticker(marketId: "{NOBODY}") {{ sequence }} }}', public=True, scopes=frozenset({"market-data:read"})
    ),
    "Query.orderBook": Rule(
        f'{{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}', public=True, scopes=frozenset({"market-data:read"})
    ),
    "Query.trades": Rule(
        f'{{ trades(marketId: "{NOBODY}", first: 1) {{ edges {{ node {{ id }} }} }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Query.candles": Rule(
        f'{{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Query.myOrders": Rule("{ myOrders(first: 1) { edges { node { id } } } }", scopes=frozenset({"orders:read"})),
    "Query.myTrades": Rule("{ myTrades(first: 1) { edges { node { id } } } }", scopes=frozenset({"orders:read"})),
    "Query.myBalances": Rule("{ myBalances { currency } }", scopes=frozenset({"payments:read"})),
    "Mutation.openMarket": _m(
        f'openMarket(input: {{tokenId: "{NOBODY}", quoteCurrency: "USDC", tickSize: "0.01", lotSize: "1"}})', {"ADMIN"}
    ),
    "Mutation.setMarketStatus": _m(f'setMarketStatus(input: {{marketId: "{NOBODY}", status: HALTED}})', {"ADMIN"}),
    "Mutation.placeOrder": _m(
        f'placeOrder(input: {{marketId: "{NOBODY}", side: BUY, type: LIMIT, quantity: "1", price: "1"}})',
        scopes=frozenset({"orders:write"}),
    ),
    "Mutation.cancelOrder": _m(f'cancelOrder(id: "{NOBODY}")', scopes=frozenset({"orders:write"})),
    "Mutation.cancelAllOrders": _m(
        f'cancelAllOrders(input: {{marketId: "{NOBODY}"}})', scopes=frozenset({"orders:write"})
    ),
    "Mutation.creditCash": _m(
        f'creditCash(input: {{userId: "{NOBODY}", amount: "1", currency: "USDC", reference: "x"}})', {"ADMIN"}
    ),
    "Subscription.trades": Rule(
        f'subscription {{ trades(marketId: "{NOBODY}") {{ sequence }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Subscription.orderBook": Rule(
        f'subscription {{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Subscription.ticker": Rule(
        f'subscription {{ ticker(marketId: "{NOBODY}") {{ sequence }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Subscription.candles": Rule(
        f'subscription {{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}',
        public=True,
        scopes=frozenset({"market-data:read"}),
    ),
    "Subscription.myOrders": Rule("subscription { myOrders { id } }", scopes=frozenset({"orders:read"})),
}
