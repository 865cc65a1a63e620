"""OAuth 2.0 client administration in the authorization matrix (ADMIN only; no client token may manage clients)."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
ADMIN = frozenset({"ADMIN"})

ENTRIES = {
    "Query.oauthClients": Rule("{ oauthClients { clientId scopes } }", roles=ADMIN),
    "Mutation.registerOAuthClient": Rule(
        f'mutation {{ registerOAuthClient(name: "matrix", ownerId: "{NOBODY}", scopes: ["assets:read"]) '
        "{ clientSecret } }",
        roles=ADMIN,
    ),
    "Mutation.rotateOAuthClientSecret": Rule(
        'mutation { rotateOAuthClientSecret(clientId: "rwac_nobody", overlapSeconds: 60) { clientSecret } }',
        roles=ADMIN,
    ),
    "Mutation.revokeOAuthClient": Rule(
        'mutation { revokeOAuthClient(clientId: "rwac_nobody") { clientId } }', roles=ADMIN
    ),
}
