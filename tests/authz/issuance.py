"""Primary issuance in the authorization matrix."""

from tests.authz import Rule, mutation

NOBODY = "00000000-0000-0000-0000-000000000000"
ISSUERS = frozenset({"ISSUER", "ADMIN"})
STAFF_AND_ISSUERS = frozenset({"ISSUER", "ADMIN", "COMPLIANCE"})
INVESTORS = frozenset({"INVESTOR"})


ENTRIES = {
    "Query.offerings": Rule("{ offerings(first: 1) { edges { node { id } } } }", scopes=frozenset({"offerings:read"})),
    "Query.offering": Rule(f'{{ offering(id: "{NOBODY}") {{ id }} }}', scopes=frozenset({"offerings:read"})),
    "Query.mySubscriptions": Rule(
        "{ mySubscriptions(first: 1) { edges { node { id } } } }", scopes=frozenset({"offerings:read"})
    ),
    "Query.offeringSubscriptions": Rule(
        f'{{ offeringSubscriptions(offeringId: "{NOBODY}") {{ edges {{ cursor }} }} }}', roles=STAFF_AND_ISSUERS
    ),
    "Query.tokenIssuances": Rule("{ tokenIssuances(first: 1) { edges { cursor } } }", roles=STAFF_AND_ISSUERS),
    "Mutation.createOffering": mutation(
        f'createOffering(input: {{tokenId: "{NOBODY}", name: "x", quoteCurrency: "USDC", price: "1", minTicket: "1", '
        f'target: "1", hardCap: "10", opensAt: "2030-01-01T00:00:00Z", closesAt: "2030-02-01T00:00:00Z", '
        f"allocationRule: PRO_RATA}})",
        ISSUERS,
    ),
    "Mutation.openOffering": mutation(f'openOffering(id: "{NOBODY}")', ISSUERS),
    "Mutation.closeOffering": mutation(f'closeOffering(id: "{NOBODY}")', ISSUERS),
    "Mutation.cancelOffering": mutation(f'cancelOffering(id: "{NOBODY}")', ISSUERS),
    "Mutation.subscribeToOffering": mutation(
        f'subscribeToOffering(input: {{offeringId: "{NOBODY}", amount: "1"}})',
        INVESTORS,
        scopes=frozenset({"offerings:write"}),
    ),
    "Mutation.cancelSubscription": mutation(
        f'cancelSubscription(id: "{NOBODY}")', INVESTORS, scopes=frozenset({"offerings:write"})
    ),
    "Mutation.issueTokens": mutation(
        f'issueTokens(input: {{tokenId: "{NOBODY}", allocations: [{{userId: "{NOBODY}", amount: "1"}}]}})', ISSUERS
    ),
    "Mutation.approveIssuance": mutation(f'approveIssuance(id: "{NOBODY}")', frozenset({"COMPLIANCE", "ADMIN"})),
    "Mutation.rejectIssuance": mutation(
        f'rejectIssuance(id: "{NOBODY}", input: {{reason: "no"}})', frozenset({"COMPLIANCE", "ADMIN"})
    ),
    "Mutation.redeemTokens": mutation(
        f'redeemTokens(input: {{tokenId: "{NOBODY}", userId: "{NOBODY}", amount: "1"}})', ISSUERS
    ),
    "Mutation.setAccreditation": Rule(
        f'mutation {{ setAccreditation(input: {{userId: "{NOBODY}", accredited: true}}) {{ __typename }} }}',
        roles=frozenset({"COMPLIANCE"}),
    ),
    "Subscription.offeringUpdates": Rule(
        f'subscription {{ offeringUpdates(offeringId: "{NOBODY}") {{ state }} }}', scopes=frozenset({"offerings:read"})
    ),
}
