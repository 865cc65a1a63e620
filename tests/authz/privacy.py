"""Privacy rights in the authorization matrix: a person's own export and erasure request (never through an API key
or an OAuth client), COMPLIANCE's queue and decisions."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
COMPLIANCE = frozenset({"COMPLIANCE"})

ENTRIES = {
    "Query.myErasureRequests": Rule("{ myErasureRequests { id status } }"),
    "Query.erasureRequests": Rule("{ erasureRequests(first: 1) { edges { node { id } } } }", roles=COMPLIANCE),
    "Mutation.exportMyData": Rule("mutation { exportMyData { data errors { code } } }"),
    "Mutation.requestErasure": Rule(
        'mutation { requestErasure(input: {reason: "matrix"}) { erasureRequest { id status } errors { code } } }'
    ),
    "Mutation.processErasure": Rule(
        f'mutation {{ processErasure(id: "{NOBODY}") {{ erasureRequest {{ id }} errors {{ code }} }} }}',
        roles=COMPLIANCE,
    ),
}
