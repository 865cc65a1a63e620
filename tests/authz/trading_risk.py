"""Trading risk controls and market makers in the authorization matrix: ADMIN only."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
ADMIN = frozenset({"ADMIN"})

ENTRIES = {
    "Query.marketRiskLimits": Rule(f'{{ marketRiskLimits(marketId: "{NOBODY}") {{ marketId }} }}', roles=ADMIN),
    "Query.marketMakerReport": Rule(f'{{ marketMakerReport(marketId: "{NOBODY}") {{ userId }} }}', roles=ADMIN),
    "Mutation.setMarketRiskLimits": Rule(
        f'mutation {{ setMarketRiskLimits(input: {{marketId: "{NOBODY}", maxOrderQuantity: "10"}}) {{ __typename }} }}',
        roles=ADMIN,
    ),
    "Mutation.killMarket": Rule(
        f'mutation {{ killMarket(input: {{marketId: "{NOBODY}"}}) {{ killSwitchResult {{ canceledOrders }} }} }}',
        roles=ADMIN,
    ),
    "Mutation.setMarketMaker": Rule(
        f'mutation {{ setMarketMaker(input: {{marketId: "{NOBODY}", userId: "{NOBODY}", makerFeeBps: -5, takerFeeBps: 10, '
        f'maxSpreadBps: 100, minQuoteSize: "10", minUptime: "0.9"}}) {{ marketMaker {{ userId }} }} }}',
        roles=ADMIN,
    ),
    "Mutation.removeMarketMaker": Rule(
        f'mutation {{ removeMarketMaker(input: {{marketId: "{NOBODY}", userId: "{NOBODY}"}}) {{ marketMaker {{ userId }} }} }}',
        roles=ADMIN,
    ),
}
