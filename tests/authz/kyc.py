"""KYC fields in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
STAFF = frozenset({"COMPLIANCE", "ADMIN"})
COMPLIANCE = frozenset({"COMPLIANCE"})

ENTRIES = {
    "Query.myKyc": Rule("{ myKyc { status } }"),
    "Query.kycCases": Rule("{ kycCases(first: 1) { edges { node { id status } } } }", roles=STAFF),
    "Mutation.submitKyc": Rule(
        'mutation { submitKyc(input: {fullName: "A B", dateOfBirth: "1990-01-01", country: "DE", '
        'documentType: PASSPORT, documentNumber: "X1", address: "Street 1"}) { kycCase { status } errors { code } } }'
    ),
    "Mutation.reviewKyc": Rule(
        f'mutation {{ reviewKyc(id: "{NOBODY}", input: {{decision: APPROVE}}) {{ kycCase {{ status }} errors {{ code }} }} }}',
        roles=COMPLIANCE,
    ),
    "Mutation.suspendKyc": Rule(
        f'mutation {{ suspendKyc(id: "{NOBODY}", input: {{reason: "r"}}) {{ kycCase {{ status }} errors {{ code }} }} }}',
        roles=COMPLIANCE,
    ),
    "Mutation.expireKyc": Rule(
        f'mutation {{ expireKyc(id: "{NOBODY}") {{ kycCase {{ status }} errors {{ code }} }} }}', roles=COMPLIANCE
    ),
}
