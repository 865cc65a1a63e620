"""Relay global object identification (schema/node.py): anyone may ask; each type's loader applies that type's
own visibility (an object the caller may not see is null, like an unknown id). No OAuth scope opens them."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"

ENTRIES = {
    "Query.node": Rule(f'{{ node(id: "{NOBODY}") {{ id }} }}', public=True),
    "Query.nodes": Rule(f'{{ nodes(ids: ["{NOBODY}"]) {{ id }} }}', public=True),
}
