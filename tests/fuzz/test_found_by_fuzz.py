"""Defects the fuzz gate found, each pinned as a deterministic case so it cannot hide behind a random draw."""

from __future__ import annotations

import httpx

from tests.fuzz.world import World

# a root field whose non-null child fails (a malformed cursor: BAD_USER_INPUT) while a sibling child still has a
# statement in flight on the same session
FAILING_CHILD = ('query($a: UUID!) { asset(id: $a) { name tokens { holderCount } '
                 'transitions(after: "USDAA0847") { edges { cursor } } } }')
PLAIN = "query($a: UUID!) { asset(id: $a) { name } }"


async def test_a_failed_child_field_leaves_no_closed_connection_in_the_pool(fuzz_client: httpx.AsyncClient,
                                                                            world: World) -> None:
    """Found by the gate (issue 12): the root field's session was closed while a sibling resolver's statement was
    still running; the closed connection went back to the pool and the next request on it answered INTERNAL
    ("cannot call PreparedStatement.fetch(): the underlying connection is closed")."""
    headers = {"Authorization": f"Bearer {world.token('ADMIN')}"}
    for asset_id in world.named["assetId"]:
        failing = await fuzz_client.post("/graphql", json={"query": FAILING_CHILD, "variables": {"a": asset_id}},
                                         headers=headers)
        assert failing.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", failing.text
        for _ in range(12):  # more than the pool's connections: every one of them is used again
            plain = await fuzz_client.post("/graphql", json={"query": PLAIN, "variables": {"a": asset_id}},
                                           headers=headers)
            assert plain.json().get("errors") is None, plain.text
