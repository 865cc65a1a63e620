"""Trading and market data in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"


def _m(call: str, roles: set[str] | None = None) -> Rule:
    doc = f"mutation {{ {call} {{ __typename }} }}"
    return Rule(doc, roles=frozenset(roles)) if roles else Rule(doc)


ENTRIES = {
    "Query.markets": Rule("{ markets { id } }"),
    "Query.orderBook": Rule(f'{{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Query.trades": Rule(f'{{ trades(marketId: "{NOBODY}", first: 1) {{ edges {{ node {{ id }} }} }} }}'),
    "Query.candles": Rule(f'{{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}'),
    "Query.myOrders": Rule("{ myOrders(first: 1) { edges { node { id } } } }"),
    "Query.myTrades": Rule("{ myTrades(first: 1) { edges { node { id } } } }"),
    "Query.myBalances": Rule("{ myBalances { currency } }"),
    "Mutation.openMarket": _m(f'openMarket(tokenId: "{NOBODY}", quoteCurrency: "USDC", tickSize: "0.01", '
                              f'lotSize: "1")', {"ADMIN"}),
    "Mutation.setMarketStatus": _m(f'setMarketStatus(marketId: "{NOBODY}", status: HALTED)', {"ADMIN"}),
    "Mutation.placeOrder": _m(f'placeOrder(input: {{marketId: "{NOBODY}", side: BUY, type: LIMIT, quantity: "1", '
                              f'price: "1"}})'),
    "Mutation.cancelOrder": _m(f'cancelOrder(id: "{NOBODY}")'),
    "Mutation.cancelAllOrders": _m(f'cancelAllOrders(marketId: "{NOBODY}")'),
    "Mutation.creditCash": _m(f'creditCash(userId: "{NOBODY}", amount: "1", currency: "USDC", reference: "x")',
                              {"ADMIN"}),
    "Subscription.trades": Rule(f'subscription {{ trades(marketId: "{NOBODY}") {{ id }} }}'),
    "Subscription.orderBook": Rule(f'subscription {{ orderBook(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Subscription.ticker": Rule(f'subscription {{ ticker(marketId: "{NOBODY}") {{ sequence }} }}'),
    "Subscription.candles": Rule(f'subscription {{ candles(marketId: "{NOBODY}", interval: ONE_MINUTE) {{ start }} }}'),
    "Subscription.myOrders": Rule("subscription { myOrders { id } }"),
}
