"""Report fields in the authorization matrix (rules in resolvers/reports/).

capTable: ADMIN, COMPLIANCE and ISSUER pass the role check (an issuer then reads only its own assets' tokens: the
token below does not exist, so they get NOT_FOUND); investors are FORBIDDEN before any lookup. investorStatement:
every signed-in caller reads their own. platformKpis: ADMIN and COMPLIANCE.
"""

from tests.authz import Rule

TOKEN = "0x00000000000000000000000000000000000000aa"

ENTRIES = {
    "Query.capTable": Rule(
        f'{{ capTable(chainId: 1, token: "{TOKEN}") {{ holderCount holders {{ holder percent }} }} }}',
        roles=frozenset({"ADMIN", "COMPLIANCE", "ISSUER"}),
    ),
    "Query.investorStatement": Rule(
        '{ investorStatement(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { email cash { currency } } }'
    ),
    "Query.platformKpis": Rule(
        "{ platformKpis { computedAt assetsByStatus { status count } } }", roles=frozenset({"ADMIN", "COMPLIANCE"})
    ),
}
