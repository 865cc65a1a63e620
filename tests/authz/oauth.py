"""OAuth 2.0 client administration in the authorization matrix (ADMIN only; no client token may manage clients)."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
ADMIN = frozenset({"ADMIN"})

ENTRIES = {
    "Query.oauthClients": Rule("{ oauthClients { clientId scopes } }", roles=ADMIN),
    "Mutation.registerOAuthClient": Rule(
        f'mutation {{ registerOAuthClient(input: {{name: "matrix", ownerId: "{NOBODY}", scopes: ["assets:read"]}}) '
        "{ credentials { clientSecret } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.rotateOAuthClientSecret": Rule(
        'mutation { rotateOAuthClientSecret(input: {clientId: "rwac_nobody", overlapSeconds: 60}) '
        "{ credentials { clientSecret } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.revokeOAuthClient": Rule(
        'mutation { revokeOAuthClient(input: {clientId: "rwac_nobody"}) { client { clientId } errors { code } } }',
        roles=ADMIN,
    ),
}
