"""Multi-factor authentication fields in the authorization matrix."""

from tests.authz import Rule

ENTRIES = {
    "Query.mfaStatus": Rule("{ mfaStatus { enabled } }"),
    # public: the challenge from login is the credential (UNAUTHENTICATED is its own answer to a bad one)
    "Mutation.completeMfaLogin": Rule(
        'mutation { completeMfaLogin(challenge: "nope", code: "000000") { accessToken } }', public=True
    ),
    "Mutation.beginMfaEnrolment": Rule("mutation { beginMfaEnrolment { otpauthUri } }"),
    "Mutation.confirmMfaEnrolment": Rule('mutation { confirmMfaEnrolment(code: "000000") { recoveryCodes } }'),
    "Mutation.disableMfa": Rule('mutation { disableMfa(code: "000000") }'),
    "Mutation.regenerateMfaRecoveryCodes": Rule(
        'mutation { regenerateMfaRecoveryCodes(code: "000000") { recoveryCodes } }'
    ),
}
