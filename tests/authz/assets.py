"""Assets, valuations, FX, documents and tokens in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
STAFF = frozenset({"COMPLIANCE", "ADMIN"})


def _m(call: str, roles: set[str]) -> Rule:
    return Rule(f"mutation {{ {call} {{ __typename }} }}", roles=frozenset(roles))


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
    "Mutation.createAsset": _m(
        'createAsset(input: {name: "", type: OTHER, jurisdiction: "x", currency: "x"})', {"ISSUER"}
    ),
    "Mutation.updateAsset": _m(f'updateAsset(id: "{NOBODY}", input: {{name: "x"}})', {"ISSUER"}),
    "Mutation.submitAsset": _m(f'submitAsset(id: "{NOBODY}")', {"ISSUER"}),
    "Mutation.approveAsset": _m(f'approveAsset(id: "{NOBODY}")', {"COMPLIANCE"}),
    "Mutation.rejectAsset": _m(f'rejectAsset(id: "{NOBODY}", input: {{reason: "x"}})', {"COMPLIANCE"}),
    "Mutation.reviseAsset": _m(f'reviseAsset(id: "{NOBODY}")', {"ISSUER"}),
    "Mutation.suspendAsset": _m(f'suspendAsset(id: "{NOBODY}", input: {{reason: "x"}})', set(STAFF)),
    "Mutation.resumeAsset": _m(f'resumeAsset(id: "{NOBODY}")', set(STAFF)),
    "Mutation.startAssetRedemption": _m(f'startAssetRedemption(id: "{NOBODY}")', {"ISSUER", "ADMIN"}),
    "Mutation.retireAsset": _m(f'retireAsset(id: "{NOBODY}")', {"ADMIN"}),
    "Mutation.tokenizeAsset": _m(
        f'tokenizeAsset(input: {{assetId: "{NOBODY}", chainId: 1, address: "0x0"}})', {"ISSUER", "ADMIN"}
    ),
    "Mutation.addValuation": _m(
        f'addValuation(input: {{assetId: "{NOBODY}", amount: "1", currency: "EUR", '
        f'method: NAV, asOf: "2026-01-01", source: "x"}})',
        {"ISSUER", "COMPLIANCE", "ADMIN"},
    ),
    "Mutation.setFxRate": _m(
        'setFxRate(input: {base: "EUR", quote: "USD", asOf: "2026-01-01", rate: "1.1"})', {"ADMIN"}
    ),
    "Mutation.uploadAssetDocument": Rule(
        f'mutation($f: Upload!) {{ uploadAssetDocument(input: {{assetId: "{NOBODY}", kind: OTHER, file: $f}}) '
        "{ __typename } }",
        variables={"f": "not-a-file"},
        roles=frozenset({"ISSUER", "COMPLIANCE", "ADMIN"}),
    ),
}
