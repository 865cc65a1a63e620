"""Indexer read fields in the authorization matrix (rule in resolvers/holdings.py).

Holdings, transfers and balances of every holder are for staff; the documents below name a holder that no test
user has linked, so an INVESTOR is FORBIDDEN. The matrix's API key belongs to a user with every role.
"""

from tests.authz import Rule

TOKEN = "0x00000000000000000000000000000000000000aa"
HOLDER = "0x00000000000000000000000000000000000000bb"
STAFF = frozenset({"ADMIN", "COMPLIANCE", "ISSUER"})

ENTRIES = {
    "Query.indexerStatus": Rule("{ indexerStatus { chainId indexedBlock } }"),
    "Query.tokenHoldings": Rule(
        f'{{ tokenHoldings(chainId: 1, token: "{TOKEN}") {{ edges {{ node {{ holder balance }} }} }} }}',
        roles=STAFF,
        scopes=frozenset({"holdings:read"}),
    ),
    "Query.tokenTransfers": Rule(
        f'{{ tokenTransfers(chainId: 1, token: "{TOKEN}", holder: "{HOLDER}") {{ edges {{ node {{ value }} }} }} }}',
        roles=STAFF,
        scopes=frozenset({"holdings:read"}),
    ),
    "Query.holderBalance": Rule(
        f'{{ holderBalance(chainId: 1, token: "{TOKEN}", holder: "{HOLDER}") {{ balance }} }}',
        roles=STAFF,
        scopes=frozenset({"holdings:read"}),
    ),
}
