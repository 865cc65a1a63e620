"""Identity & access fields in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"

ENTRIES = {
    "Query.me": Rule("{ me { id } }", scopes=frozenset({"account:read"})),
    "Query.user": Rule(f'{{ user(id: "{NOBODY}") {{ id }} }}', roles=frozenset({"ADMIN", "COMPLIANCE"})),
    "Mutation.register": Rule(
        'mutation { register(input: {email: "x", password: "y"}) { session { accessToken } errors { code } } }',
        public=True,
    ),
    "Mutation.login": Rule(
        'mutation { login(input: {email: "x@example.com", password: "y"}) { session { accessToken } } }', public=True
    ),
    "Mutation.refreshToken": Rule(
        'mutation { refreshToken(input: {refreshToken: "nope"}) { session { accessToken } } }', public=True
    ),
    "Mutation.logout": Rule('mutation { logout(input: {refreshToken: "nope"}) { ok errors { code } } }'),
    "Mutation.grantRole": Rule(
        f'mutation {{ grantRole(input: {{userId: "{NOBODY}", role: ISSUER}}) {{ user {{ id }} errors {{ code }} }} }}',
        roles=frozenset({"ADMIN"}),
    ),
    "Mutation.revokeRole": Rule(
        f'mutation {{ revokeRole(input: {{userId: "{NOBODY}", role: ISSUER}}) {{ user {{ id }} errors {{ code }} }} }}',
        roles=frozenset({"ADMIN"}),
    ),
}
