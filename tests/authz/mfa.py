"""Multi-factor authentication fields in the authorization matrix."""

from tests.authz import Rule

ENTRIES = {
    "Query.mfaStatus": Rule("{ mfaStatus { enabled } }"),
    # public: the challenge from login is the credential (UNAUTHENTICATED is its own answer to a bad one)
    "Mutation.completeMfaLogin": Rule(
        'mutation { completeMfaLogin(input: {challenge: "nope", code: "000000"}) { session { accessToken } } }',
        public=True,
    ),
    "Mutation.beginMfaEnrolment": Rule("mutation { beginMfaEnrolment { enrolment { otpauthUri } errors { code } } }"),
    "Mutation.confirmMfaEnrolment": Rule(
        'mutation { confirmMfaEnrolment(input: {code: "000000"}) { recoveryCodes errors { code } } }'
    ),
    "Mutation.disableMfa": Rule('mutation { disableMfa(input: {code: "000000"}) { ok errors { code } } }'),
    "Mutation.regenerateMfaRecoveryCodes": Rule(
        'mutation { regenerateMfaRecoveryCodes(input: {code: "000000"}) { recoveryCodes errors { code } } }'
    ),
}
