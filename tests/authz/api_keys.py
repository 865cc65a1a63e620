"""API key fields in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"

ENTRIES = {
    "Query.myApiKeys": Rule("{ myApiKeys { id prefix } }"),
    "Mutation.createApiKey": Rule(
        'mutation { createApiKey(input: {name: "matrix"}) { createdApiKey { secret } errors { code } } }'
    ),
    "Mutation.revokeApiKey": Rule(
        f'mutation {{ revokeApiKey(id: "{NOBODY}") {{ apiKey {{ id }} errors {{ code }} }} }}'
    ),
}
