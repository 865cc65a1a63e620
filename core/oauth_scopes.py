"""The OAuth 2.0 scopes ADMIN may grant a partner's client, and the root fields each one opens (enforced by
schema/scopes.py; validated at registration and at the token endpoint by resolvers/identity/oauth_clients.py)."""

from __future__ import annotations

SCOPES: dict[str, tuple[str, ...]] = {
    "account:read": ("Query.me", "Query.myWallets"),
    "assets:read": ("Query.asset", "Query.assets", "Query.token", "Query.fxRates", "Query.convertAmount"),
    "holdings:read": ("Query.tokenHoldings", "Query.tokenTransfers", "Query.holderBalance"),
    "market-data:read": (
        "Query.markets",
        "Query.orderBook",
        "Query.trades",
        "Query.candles",
        "Query.ticker",
        "Subscription.trades",
        "Subscription.orderBook",
        "Subscription.ticker",
        "Subscription.candles",
    ),
    "orders:read": ("Query.myOrders", "Query.myTrades", "Subscription.myOrders", "Subscription.mySettlements"),
    "orders:write": ("Mutation.placeOrder", "Mutation.cancelOrder", "Mutation.cancelAllOrders"),
    "payments:read": (
        "Query.myBalances",
        "Query.payments",
        "Query.payment",
        "Query.myWithdrawals",
        "Subscription.paymentUpdates",
        "Subscription.myWithdrawals",
    ),
    "payments:write": ("Mutation.createPayment", "Mutation.cancelPayment"),
    "offerings:read": ("Query.offerings", "Query.offering", "Query.mySubscriptions", "Subscription.offeringUpdates"),
    "offerings:write": ("Mutation.subscribeToOffering", "Mutation.cancelSubscription"),
}
ALL_SCOPES = frozenset(SCOPES)
