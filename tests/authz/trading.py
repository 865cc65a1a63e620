"""Trading and market data in the authorization matrix."""

from tests.authz import Rule, mutation

NOBODY = "00000000-0000-0000-0000-000000000000"


def _market_data(document: str) -> Rule:
    """Public market data (schema.permissions.public_market_data): anyone, anonymous callers rate-limited per IP;
    partner clients with market-data:read."""
    return Rule(document, public=True, scopes=frozenset({"market-data:read"}))


ENTRIES = {
    "Query.markets": _market_data("{ markets { id } }"),
    "Query.ticker": _market_data(f'{{ ticker(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Query.orderBook": _market_data(f'{{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Query.trades": _market_data(f'{{ trades(marketId: "{NOBODY}", first: 1) {{ edges {{ node {{ id }} }} }} }}'),
    "Query.candles": _market_data(f'{{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}'),
    "Query.myOrders": Rule("{ myOrders(first: 1) { edges { node { id } } } }", scopes=frozenset({"orders:read"})),
    "Query.myTrades": Rule("{ myTrades(first: 1) { edges { node { id } } } }", scopes=frozenset({"orders:read"})),
    "Query.myBalances": Rule("{ myBalances { currency } }", scopes=frozenset({"payments:read"})),
    "Mutation.openMarket": mutation(
        f'openMarket(input: {{tokenId: "{NOBODY}", quoteCurrency: "USDC", tickSize: "0.01", lotSize: "1"}})', {"ADMIN"}
    ),
    "Mutation.setMarketStatus": mutation(
        f'setMarketStatus(input: {{marketId: "{NOBODY}", status: HALTED}})', {"ADMIN"}
    ),
    "Mutation.placeOrder": mutation(
        f'placeOrder(input: {{marketId: "{NOBODY}", side: BUY, type: LIMIT, quantity: "1", price: "1"}})',
        scopes=frozenset({"orders:write"}),
    ),
    "Mutation.cancelOrder": mutation(f'cancelOrder(id: "{NOBODY}")', scopes=frozenset({"orders:write"})),
    "Mutation.cancelAllOrders": mutation(
        f'cancelAllOrders(input: {{marketId: "{NOBODY}"}})', scopes=frozenset({"orders:write"})
    ),
    "Mutation.creditCash": mutation(
        f'creditCash(input: {{userId: "{NOBODY}", amount: "1", currency: "USDC", reference: "x"}})', {"ADMIN"}
    ),
    "Subscription.trades": _market_data(f'subscription {{ trades(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Subscription.orderBook": _market_data(f'subscription {{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Subscription.ticker": _market_data(f'subscription {{ ticker(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Subscription.candles": _market_data(
        f'subscription {{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}'
    ),
    "Subscription.myOrders": Rule("subscription { myOrders { id } }", scopes=frozenset({"orders:read"})),
}
