"""Assets, valuations, FX, documents and tokens in the authorization matrix."""

from tests.authz import Rule, mutation

NOBODY = "00000000-0000-0000-0000-000000000000"
STAFF = frozenset({"COMPLIANCE", "ADMIN"})


ENTRIES = {
    "Query.asset": Rule(f'{{ asset(id: "{NOBODY}") {{ id }} }}', scopes=frozenset({"assets:read"})),
    "Query.assets": Rule("{ assets(first: 1) { edges { node { id } } } }", scopes=frozenset({"assets:read"})),
    "Query.fxRates": Rule("{ fxRates(first: 1) { edges { node { rate } } } }", scopes=frozenset({"assets:read"})),
    "Query.convertAmount": Rule(
        '{ convertAmount(amount: "1", fromCurrency: "EUR", toCurrency: "USD", asOf: "2026-01-01") }',
        scopes=frozenset({"assets:read"}),
    ),
    "Query.documentContent": Rule(f'{{ documentContent(id: "{NOBODY}") {{ contentBase64 }} }}'),
    "Query.token": Rule(f'{{ token(id: "{NOBODY}") {{ address }} }}', scopes=frozenset({"assets:read"})),
    "Mutation.createAsset": mutation(
        'createAsset(input: {name: "", type: OTHER, jurisdiction: "x", currency: "x"})', {"ISSUER"}
    ),
    "Mutation.updateAsset": mutation(f'updateAsset(id: "{NOBODY}", input: {{name: "x"}})', {"ISSUER"}),
    "Mutation.submitAsset": mutation(f'submitAsset(id: "{NOBODY}")', {"ISSUER"}),
    "Mutation.approveAsset": mutation(f'approveAsset(id: "{NOBODY}")', {"COMPLIANCE"}),
    "Mutation.rejectAsset": mutation(f'rejectAsset(id: "{NOBODY}", input: {{reason: "x"}})', {"COMPLIANCE"}),
    "Mutation.reviseAsset": mutation(f'reviseAsset(id: "{NOBODY}")', {"ISSUER"}),
    "Mutation.suspendAsset": mutation(f'suspendAsset(id: "{NOBODY}", input: {{reason: "x"}})', STAFF),
    "Mutation.resumeAsset": mutation(f'resumeAsset(id: "{NOBODY}")', STAFF),
    "Mutation.startAssetRedemption": mutation(f'startAssetRedemption(id: "{NOBODY}")', {"ISSUER", "ADMIN"}),
    "Mutation.retireAsset": mutation(f'retireAsset(id: "{NOBODY}")', {"ADMIN"}),
    "Mutation.tokenizeAsset": mutation(
        f'tokenizeAsset(input: {{assetId: "{NOBODY}", chainId: 1, address: "0x0"}})', {"ISSUER", "ADMIN"}
    ),
    "Mutation.addValuation": mutation(
        f'addValuation(input: {{assetId: "{NOBODY}", amount: "1", currency: "EUR", '
        f'method: NAV, asOf: "2026-01-01", source: "x"}})',
        {"ISSUER", "COMPLIANCE", "ADMIN"},
    ),
    "Mutation.setFxRate": mutation(
        'setFxRate(input: {base: "EUR", quote: "USD", asOf: "2026-01-01", rate: "1.1"})', {"ADMIN"}
    ),
    "Mutation.uploadAssetDocument": Rule(
        f'mutation($f: Upload!) {{ uploadAssetDocument(input: {{assetId: "{NOBODY}", kind: OTHER, file: $f}}) '
        "{ __typename } }",
        variables={"f": "not-a-file"},
        roles=frozenset({"ISSUER", "COMPLIANCE", "ADMIN"}),
    ),
}
