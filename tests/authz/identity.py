"""Identity & access fields in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"

ENTRIES = {
    "Query.me": Rule("{ me { id } }", scopes=frozenset({"account:read"})),
    "Query.user": Rule(f'{{ user(id: "{NOBODY}") {{ id }} }}', roles=frozenset({"ADMIN", "COMPLIANCE"})),
    "Mutation.register": Rule('mutation { register(email: "x", password: "y") { accessToken } }', public=True),
    "Mutation.login": Rule('mutation { login(email: "x@example.com", password: "y") { accessToken } }', public=True),
    "Mutation.refreshToken": Rule('mutation { refreshToken(refreshToken: "nope") { accessToken } }', public=True),
    "Mutation.logout": Rule('mutation { logout(refreshToken: "nope") }'),
    "Mutation.grantRole": Rule(
        f'mutation {{ grantRole(userId: "{NOBODY}", role: ISSUER) {{ id }} }}', roles=frozenset({"ADMIN"})
    ),
    "Mutation.revokeRole": Rule(
        f'mutation {{ revokeRole(userId: "{NOBODY}", role: ISSUER) {{ id }} }}', roles=frozenset({"ADMIN"})
    ),
}
