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
        'documentType: PASSPORT, documentNumber: "X1", address: "Street 1"}) { status } }'
    ),
    "Mutation.reviewKyc": Rule(
        f'mutation {{ reviewKyc(caseId: "{NOBODY}", decision: APPROVE) {{ status }} }}', roles=COMPLIANCE
    ),
    "Mutation.suspendKyc": Rule(
        f'mutation {{ suspendKyc(caseId: "{NOBODY}", reason: "r") {{ status }} }}', roles=COMPLIANCE
    ),
    "Mutation.expireKyc": Rule(f'mutation {{ expireKyc(caseId: "{NOBODY}") {{ status }} }}', roles=COMPLIANCE),
}
